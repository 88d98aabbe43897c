"""Causal-LM models: preset shapes and sizes, fast-path settings, local loading, LoRA,
FLOPs, and that the tiny preset learns on a CPU in seconds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from torchrig.errors import UsageError
from torchrig.recipes.causal_lm.data import PretrainBatches
from torchrig.recipes.causal_lm.model import (
    MODEL_PRESETS,
    apply_lora,
    build_model,
    count_parameters,
    flops_per_token,
    load_pretrained,
    transformer_blocks,
)
from torchrig.train.attention import CAUSAL_SDPA
from torchrig.train.metrics import transformer_flops_per_token


def on_meta(preset: str, vocab: int, seq: int | None = None) -> Any:
    """Big presets are built without memory or init time: shapes only."""
    with torch.device("meta"):
        return build_model(preset, vocab, seq)


def test_required_presets_exist() -> None:
    assert {"tiny-gpt2", "tiny-llama", "gpt2-124m", "gpt2-350m", "llama-1b"} <= set(MODEL_PRESETS)


def test_gpt2_124m_is_gpt2_small() -> None:
    model = on_meta("gpt2-124m", 50257)
    cfg = model.config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions) == (12, 768, 12, 1024)
    assert cfg.vocab_size == 50304  # 50257 padded up to a multiple of 64
    # GPT-2 small's published count with the padded vocabulary (tied head counted once).
    assert count_parameters(model) == 124_475_904
    assert model.lm_head.weight is model.transformer.wte.weight


def test_gpt2_350m_and_llama_1b_sizes() -> None:
    assert 350e6 < count_parameters(on_meta("gpt2-350m", 50257)) < 360e6
    llama = on_meta("llama-1b", 128256)
    cfg = llama.config
    assert (cfg.hidden_size, cfg.num_hidden_layers) == (2048, 16)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (32, 8)
    assert cfg.intermediate_size == 8192 and cfg.tie_word_embeddings
    assert cfg.rope_parameters["rope_theta"] == 500_000.0
    assert count_parameters(llama) == 1_235_814_400  # Llama-3.2-1B's count


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
def test_fast_path_settings(preset: str) -> None:
    model = build_model(preset, 300, max_seq_len=64)
    cfg = model.config
    assert cfg.vocab_size == 320
    assert model.get_input_embeddings().weight.shape[0] == 320
    assert cfg._attn_implementation == CAUSAL_SDPA
    assert model.training and not cfg.use_cache
    assert cfg.max_position_embeddings == 64
    if preset == "tiny-gpt2":
        assert cfg.activation_function == "gelu_pytorch_tanh"
        assert cfg.resid_pdrop == cfg.embd_pdrop == cfg.attn_pdrop == 0.0
    else:
        assert cfg.attention_dropout == 0.0
    assert count_parameters(model) < 200_000  # tiny: seconds on a CPU


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown model preset 'gpt5'") as info:
        build_model("gpt5", 300)
    assert info.value.fix and "tiny-gpt2" in info.value.fix and "llama-1b" in info.value.fix


@pytest.mark.parametrize(("preset", "layers", "cls"), [
    ("tiny-gpt2", 2, "GPT2Block"), ("gpt2-124m", 12, "GPT2Block"),
    ("tiny-llama", 2, "LlamaDecoderLayer"), ("llama-1b", 16, "LlamaDecoderLayer"),
])  # fmt: skip
def test_transformer_blocks(preset: str, layers: int, cls: str) -> None:
    blocks = transformer_blocks(on_meta(preset, 300))
    assert len(blocks) == layers
    assert {type(b).__name__ for b in blocks} == {cls}


def test_flops_per_token_matches_bench_formula() -> None:
    model = on_meta("gpt2-124m", 50257)
    n = count_parameters(model) - 1024 * 768  # position embeddings are a lookup
    assert flops_per_token(model, 1024) == transformer_flops_per_token(n, 12, 768, 1024)
    llama = on_meta("llama-1b", 128256)
    n = count_parameters(llama)  # tied: the embedding is the head's matmul, counted once
    assert flops_per_token(llama, 2048) == transformer_flops_per_token(n, 16, 2048, 2048)


def test_save_and_load_pretrained(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("tiny-llama", 300).eval()
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m/model.safetensors").is_file()
    loaded = load_pretrained(tmp_path / "m").eval()
    assert loaded.dtype == torch.float32 and loaded.config._attn_implementation == CAUSAL_SDPA
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_load_pretrained_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a Hugging Face model folder"):
        load_pretrained(tmp_path / "empty")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(UsageError, match="no safetensors weights") as info:
        load_pretrained(pickled)
    assert info.value.fix and "pytorch_model.bin" in info.value.fix


@pytest.mark.parametrize("preset", ["tiny-gpt2", "tiny-llama"])
def test_lora_trains_only_adapters(preset: str) -> None:
    torch.manual_seed(0)
    model = build_model(preset, 300)
    total = count_parameters(model)
    lora = apply_lora(model, r=4, alpha=8)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # Every linear of attention and MLP got an adapter: r × (in + out) each.
    d, layers = 64, 2
    if preset == "tiny-gpt2":  # c_attn 64→192, attn c_proj 64→64, c_fc 64→256, mlp c_proj 256→64
        per_layer = 4 * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))
    else:  # q, o 64→64; k, v 64→32 (2 kv heads of 16); gate, up 64→176; down 176→64
        per_layer = 4 * (2 * (d + d) + 2 * (d + 32) + 3 * (d + 176))
    assert count_parameters(lora, trainable_only=True) == layers * per_layer
    assert count_parameters(lora) == total + layers * per_layer
    assert len(transformer_blocks(lora)) == 2  # works through the peft wrapper

    base_before = {n: p.detach().clone() for n, p in lora.named_parameters() if n not in trainable}
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 300, (2, 16))
    for _ in range(2):  # step 1 moves B off zero, step 2 then moves A
        lora(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    after = dict(lora.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in base_before.items())

    # Frozen weights need no weight gradient: 4N + 2·N_trainable instead of 6N.
    n = count_parameters(lora) - (128 * 64 if preset == "tiny-gpt2" else 0)
    attention = 12 * 2 * 64 * 128
    assert flops_per_token(lora, 128) == 4 * n + 2 * layers * per_layer + attention


def test_lora_without_peft_says_how_to_add_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft → ImportError
    with pytest.raises(UsageError, match="peft") as info:
        apply_lora(build_model("tiny-gpt2", 300))
    assert info.value.fix == "add peft to [python] packages in torchrig.toml"


def test_tiny_preset_learns_on_cpu_in_seconds(tmp_path: Path) -> None:
    """The whole pretraining path end to end: a token file, windows, the model, a loss."""
    import json

    import numpy as np

    # A repeating 16-token pattern: learnable in a few dozen steps.
    path = tmp_path / "p.bin"
    np.tile(np.arange(16, dtype=np.uint16), 200).tofile(path)
    path.with_name("p.bin.json").write_text(json.dumps({"dtype": "uint16", "tokens": 3200}))
    torch.manual_seed(0)
    model = build_model("tiny-gpt2", 300, max_seq_len=32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = PretrainBatches(path, batch_size=8, seq_len=32, seed=0)
    losses = []
    for _ in range(40):
        x, y = next(batches)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[0] > 5.0  # ≈ ln(320) at random init
    assert losses[-1] < 0.5
