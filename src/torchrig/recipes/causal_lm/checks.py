"""What the causal-LM recipe checks before it reads data or writes a file: the model exists
and the sequence length fits its context and the memory of the device.

A preset's context is its `max_seq_len` (tiny-gpt2: 128); a pretrained model's is its
config's `n_positions` / `max_position_embeddings` (positions past it have no embedding,
and RoPE models were never trained on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.recipes.causal_lm import model as model_mod
from torchrig.recipes.causal_lm.config import TrainConfig
from torchrig.recipes.pretrained import model_config, positive_int
from torchrig.train import budget


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    heads: int
    context: int
    vocab: int


def _pretrained_shape(path: Path, vocab: int) -> Shape:
    config = model_config(path)
    return Shape(
        name=str(path),
        layers=positive_int(config, "n_layer", "num_hidden_layers", default=1),
        hidden=positive_int(config, "n_embd", "hidden_size", default=1),
        heads=positive_int(config, "n_head", "num_attention_heads", default=1),
        context=positive_int(config, "n_positions", "max_position_embeddings", default=1 << 30),
        vocab=positive_int(config, "vocab_size", default=vocab),
    )


def model_shape(cfg: TrainConfig) -> Shape:
    if cfg.model_path is not None:
        return _pretrained_shape(Path(cfg.model_path), cfg.vocab_size)
    p = model_mod.get_preset(cfg.model)  # an unknown name: one line naming the known ones
    return Shape(cfg.model, p.n_layer, p.d_model, p.n_head, p.max_seq_len, cfg.vocab_size)


def check_before_work(cfg: TrainConfig, device: Any) -> None:
    """UsageError for a model that does not exist or a step that cannot fit."""
    shape = model_shape(cfg)
    if cfg.seq_len > shape.context:
        raise UsageError(
            f"--seq-len {cfg.seq_len} is longer than the context of {shape.name} "
            f"({shape.context} tokens)",
            f"use --seq-len {shape.context} or less"
            + ("" if cfg.model_path is not None else ", or a --model with a longer context"),
        )
    parameters = 12 * shape.layers * shape.hidden**2 + shape.vocab * shape.hidden
    cuda = getattr(device, "type", None) == "cuda"
    need = budget.step_bytes(
        layers=shape.layers,
        hidden=shape.hidden,
        heads=shape.heads,
        seq_len=cfg.seq_len,
        batch=cfg.micro_batch,
        parameters=parameters,
        fused_attention=cuda,
        bytes_per_value=4 if cfg.precision == "fp32" or not cuda else 2,
    )
    budget.check_fits(
        need,
        device,
        f"--micro-batch {cfg.micro_batch} × --seq-len {cfg.seq_len} on {shape.name}",
        "lower --micro-batch (and raise --grad-accum to keep the batch) or --seq-len",
    )
