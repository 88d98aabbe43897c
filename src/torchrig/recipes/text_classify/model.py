"""The text classifier: BERT for sequence classification behind a plain-tensor forward.

Models are transformers' `BertForSequenceClassification` (attention through
`scaled_dot_product_attention`), from a named shape with random weights, or pretrained
weights from a local folder (any model `AutoModelForSequenceClassification` loads whose
forward takes input_ids and attention_mask; BERT is what is tested). Nothing is downloaded.

`TextClassifier` wraps it so that forward(input_ids, attention_mask) returns the logits
tensor [B, num_labels], not a ModelOutput: the training loop, torch.export, ONNX and
TorchScript then see plain tensors. Its state dict ("model.bert...", "model.classifier...")
is what OUT/final/model.safetensors holds, and `export.build_model` rebuilds the same module
from classifier.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torchrig.errors import UsageError
from torchrig.train.metrics import transformer_flops_per_token

ATTENTION = "sdpa"


@dataclass(frozen=True)
class BertShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    max_positions: int = 512
    description: str = ""


MODEL_PRESETS: dict[str, BertShape] = {
    "tiny-bert": BertShape(
        layers=2, hidden=64, heads=2, intermediate=128,
        description="2 layers, 64 wide: trains in seconds on a CPU (tests, smoke runs)",
    ),
    "bert-base": BertShape(
        layers=12, hidden=768, heads=12, intermediate=3072,
        description="BERT-base (110M parameters with a 30,522-token vocabulary)",
    ),
}  # fmt: skip


class TextClassifier(torch.nn.Module):  # type: ignore[misc]
    """forward(input_ids, attention_mask) -> logits, for a transformers classifier."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def get_shape(name: str) -> BertShape:
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        raise UsageError(
            f"unknown model {name!r}",
            f"use one of: {', '.join(MODEL_PRESETS)}; or local weights with --model-path DIR",
        ) from None


def label_maps(labels: list[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def build_config(name: str, vocab_size: int, labels: list[str], pad_token_id: int) -> Any:
    """The transformers BertConfig of a named shape (no weights made)."""
    from transformers import BertConfig

    shape = get_shape(name)
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_positions,
        pad_token_id=pad_token_id,
        # BERT's fine-tuning defaults: dropout 0.1 in the encoder and before the head.
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        architectures=["BertForSequenceClassification"],
        **label_maps(labels),
    )


def from_config(config: Any) -> TextClassifier:
    """A randomly initialised classifier of `config` (seed torch first to reproduce it)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=ATTENTION)
    return TextClassifier(model)


def build_model(name: str, vocab_size: int, labels: list[str], pad_token_id: int) -> TextClassifier:
    return from_config(build_config(name, vocab_size, labels, pad_token_id))


def load_pretrained(path: Path, labels: list[str]) -> TextClassifier:
    """Local pretrained weights (config.json + safetensors) with a new head of len(labels)
    classes: the head's size differs from the checkpoint's, so it is freshly initialised."""
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UsageError(
            f"{path} is not a Hugging Face model folder (no config.json)"
            if path.is_dir()
            else f"pretrained model folder {path} does not exist",
            "give the folder written by save_pretrained (config.json + *.safetensors)",
        )
    if not any(path.glob("*.safetensors")):
        raise UsageError(
            f"{path} has no safetensors weights",
            "convert them once with from_pretrained(...).save_pretrained(..., "
            "safe_serialization=True): pickled .bin weights can run code",
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            local_files_only=True,
            use_safetensors=True,
            ignore_mismatched_sizes=True,
            attn_implementation=ATTENTION,
            dtype=torch.float32,  # master weights for mixed precision
            **label_maps(labels),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"cannot load the model in {path}: {exc}".splitlines()[0],
            "check that the folder holds a model saved by transformers",
        ) from None
    return TextClassifier(model)


def max_positions(model: TextClassifier) -> int:
    return int(getattr(model.model.config, "max_position_embeddings", 1 << 30))


def vocab_rows(model: TextClassifier) -> int:
    return int(model.model.get_input_embeddings().weight.shape[0])


def flops_per_sample(model: TextClassifier, seq_len: int) -> float:
    """Training FLOPs of one sequence of seq_len tokens (padding counts: it is computed):
    (6N + 12·L·d·T) · T with N the weights outside the embeddings, the formula and the
    parameter count of `torchrig bench`'s BERT workload, so MFU compares with it."""
    cfg = model.model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    layers = int(cfg.num_hidden_layers)
    hidden = int(cfg.hidden_size)
    return float(transformer_flops_per_token(n, layers, hidden, seq_len) * seq_len)
