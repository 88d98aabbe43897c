"""Causal-LM models: named presets (random init), local pretrained weights, LoRA, FLOPs.

Models are the transformers classes (`GPT2LMHeadModel`, `LlamaForCausalLM`), so a trained
checkpoint saved with `save_pretrained` opens anywhere transformers does. Choices that make
pretraining fast, as in the bench workload (bench/workloads.py):

- the vocabulary is padded up to a multiple of 64 (tensor-core friendly matmul shapes; the
  extra rows are never produced by the tokenizer and learn to be unlikely);
- attention through `scaled_dot_product_attention` (FlashAttention on GPUs that have it);
- dropout 0 (pretraining on lots of data does not overfit; dropout costs kernels);
- GPT-2's GELU is `gelu_pytorch_tanh`: the same tanh approximation as GPT-2's `gelu_new`,
  as one fused kernel instead of seven elementwise ones.

The model knows nothing about parallelism: `transformer_blocks` hands the per-layer modules
to whoever applies FSDP2, and torch.compile is applied by the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torchrig.errors import UsageError
from torchrig.train.attention import register_causal_sdpa
from torchrig.train.metrics import transformer_flops_per_token

VOCAB_MULTIPLE = 64

Arch = Literal["gpt2", "llama"]


@dataclass(frozen=True)
class ModelPreset:
    """The shape of a model; `vocab_size` comes from the tokenizer at build time."""

    arch: Arch
    n_layer: int
    d_model: int
    n_head: int
    max_seq_len: int  # default context; build_model(max_seq_len=...) overrides it
    n_kv_head: int | None = None  # llama: grouped-query attention; None = n_head
    d_ff: int | None = None  # llama: MLP width; gpt2 always uses 4 × d_model
    rope_theta: float = 10_000.0
    tie_embeddings: bool = True
    description: str = ""


MODEL_PRESETS: dict[str, ModelPreset] = {
    "tiny-gpt2": ModelPreset(
        "gpt2", n_layer=2, d_model=64, n_head=4, max_seq_len=128,
        description="2 layers, 64 wide: trains in seconds on a CPU (tests, smoke runs)",
    ),
    "tiny-llama": ModelPreset(
        "llama", n_layer=2, d_model=64, n_head=4, n_kv_head=2, d_ff=176, max_seq_len=128,
        description="2 layers, 64 wide, grouped-query attention: seconds on a CPU",
    ),
    "gpt2-124m": ModelPreset(
        "gpt2", n_layer=12, d_model=768, n_head=12, max_seq_len=1024,
        description="GPT-2 small (124M parameters)",
    ),
    "gpt2-350m": ModelPreset(
        "gpt2", n_layer=24, d_model=1024, n_head=16, max_seq_len=1024,
        description="GPT-2 medium (350M parameters)",
    ),
    "llama-1b": ModelPreset(
        "llama", n_layer=16, d_model=2048, n_head=32, n_kv_head=8, d_ff=8192,
        max_seq_len=2048, rope_theta=500_000.0, tie_embeddings=True,
        description="the shape of Llama-3.2-1B (1.2B parameters with its 128k vocabulary)",
    ),
}  # fmt: skip


def get_preset(name: str) -> ModelPreset:
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        known = ", ".join(MODEL_PRESETS)
        raise UsageError(
            f"unknown model preset {name!r}",
            f"use one of: {known}; or pretrained weights from a local folder",
        ) from None


def padded_vocab(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return -(-vocab_size // multiple) * multiple


def build_config(preset: str, vocab_size: int, max_seq_len: int | None = None) -> Any:
    """The transformers config for a preset (no weights made)."""
    p = get_preset(preset)
    if vocab_size < 1:
        raise UsageError(f"vocab_size must be positive, got {vocab_size}")
    seq = max_seq_len or p.max_seq_len
    vocab = padded_vocab(vocab_size)
    if p.arch == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=vocab,
            n_positions=seq,
            n_embd=p.d_model,
            n_layer=p.n_layer,
            n_head=p.n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            activation_function="gelu_pytorch_tanh",
            tie_word_embeddings=p.tie_embeddings,
            use_cache=False,
        )
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=p.d_model,
        intermediate_size=p.d_ff or 4 * p.d_model,
        num_hidden_layers=p.n_layer,
        num_attention_heads=p.n_head,
        num_key_value_heads=p.n_kv_head or p.n_head,
        max_position_embeddings=seq,
        rope_theta=p.rope_theta,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        attention_dropout=0.0,
        tie_word_embeddings=p.tie_embeddings,
        use_cache=False,
    )


def build_model(preset: str, vocab_size: int, max_seq_len: int | None = None) -> Any:
    """A randomly initialised model of a preset's shape, fp32, in train mode.

    `vocab_size` is the tokenizer's; the embedding is padded up to a multiple of 64.
    Seed with `torch.manual_seed` first for a reproducible initialisation.
    """
    from transformers import AutoModelForCausalLM

    config = build_config(preset, vocab_size, max_seq_len)
    # SDPA that keeps the Flash kernel under torch.compile (see torchrig.train.attention).
    model = AutoModelForCausalLM.from_config(config, attn_implementation=register_causal_sdpa())
    return model.train()


def load_pretrained(path: Path, dtype: Any = None) -> Any:
    """A causal LM from a local Hugging Face folder (config.json + safetensors weights).

    Loaded in fp32 by default (master weights for mixed precision); pass a torch dtype for
    e.g. a bf16 base under LoRA. Only safetensors: pickled `.bin` weights can run code.
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_dir():
        raise UsageError(
            f"pretrained model folder {path} does not exist",
            "give the folder that holds config.json and model.safetensors",
        )
    if not (path / "config.json").is_file():
        raise UsageError(
            f"{path} is not a Hugging Face model folder (no config.json)",
            "give the folder written by save_pretrained (config.json + *.safetensors)",
        )
    has_safetensors = (
        any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file()
    )
    if not has_safetensors:
        pickled = sorted(p.name for p in path.glob("*.bin"))
        hint = (
            f"it has only pickled weights ({', '.join(pickled)}); convert them once with "
            "AutoModelForCausalLM.from_pretrained(...).save_pretrained(..., "
            "safe_serialization=True)"
            if pickled
            else "put model.safetensors (or a sharded index) beside config.json"
        )
        raise UsageError(f"{path} has no safetensors weights", hint)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            local_files_only=True,
            use_safetensors=True,
            attn_implementation=register_causal_sdpa(),
            dtype=dtype or torch.float32,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"cannot load the model in {path}: {exc}".splitlines()[0],
            "check that the folder is a causal LM saved by transformers",
        ) from None
    model.config.use_cache = False
    return model.train()


# LoRA targets: every linear of attention and MLP (QLoRA's finding: all linears beat
# attention-only at the same rank). GPT-2 names its fused qkv `c_attn`; `c_proj` is both
# attention output and MLP output.
LORA_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def apply_lora(
    model: Any,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
) -> Any:
    """Wrap `model` in peft LoRA adapters: the base is frozen, only adapters train.

    Returns the peft model; `save_pretrained` on it writes only the adapter.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UsageError(
            "LoRA needs the peft package, which is not installed",
            "add peft to [python] packages in torchrig.toml",
        ) from None
    model_type = getattr(model.config, "model_type", "")
    targets = target_modules or LORA_TARGETS.get(model_type)
    if not targets:
        raise UsageError(
            f"no default LoRA targets for model type {model_type!r}",
            "name the linear layers to adapt (target_modules), e.g. q_proj, v_proj",
        )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        # GPT-2's Conv1D stores weights transposed (in × out).
        fan_in_fan_out=model_type == "gpt2",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise UsageError(
            f"LoRA: {exc}".splitlines()[0],
            "check target_modules against the model's layer names",
        ) from None


def _base(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def transformer_blocks(model: Any) -> list[Any]:
    """The repeated per-layer modules, in order (what FSDP2's fully_shard wraps one by one)."""
    import torch

    base = _base(model)
    for attrs in (("transformer", "h"), ("model", "layers"), ("gpt_neox", "layers")):
        obj = base
        for attr in attrs:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return list(obj)
    # Other architectures: the longest ModuleList of modules of one class.
    best: list[Any] = []
    for module in base.modules():
        if (
            isinstance(module, torch.nn.ModuleList)
            and len(module) > len(best)
            and len({type(m) for m in module}) == 1
        ):
            best = list(module)
    if not best:
        raise UsageError(f"cannot find the transformer blocks of {type(base).__name__}")
    return best


def count_parameters(model: Any, trainable_only: bool = False) -> int:
    """Parameters, a tied embedding counted once (named_parameters deduplicates)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _matmul_parameters(base: Any) -> int:
    """Parameters that take part in a matmul per token: position embeddings are a lookup;
    an untied input embedding is a lookup (its output head is the matmul); a tied one is
    the head and counts once."""
    embed = base.get_input_embeddings().weight
    head = base.get_output_embeddings()
    tied = head is not None and head.weight is embed
    skip: set[int] = set()
    if not tied:
        skip.add(id(embed))
    for name, p in base.named_parameters():
        if name.endswith(("wpe.weight", "embed_positions.weight")):
            skip.add(id(p))
    return sum(p.numel() for p in base.parameters() if id(p) not in skip)


def flops_per_token(model: Any, seq_len: int) -> float:
    """Training FLOPs per token: 6N + 12·L·d·T, bench/model.py's formula (PaLM/nanoGPT).

    With LoRA the frozen weights get no weight gradient: 2N forward + 2N for the input
    gradients + 2N_trainable for the weight gradients, instead of 6N. The LoRA matrices
    themselves are counted in N (they are small).
    """
    base = _base(model)
    cfg = base.config
    n_layer = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    n_head = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    hidden = getattr(cfg, "hidden_size", None) or cfg.n_embd
    head_dim = getattr(cfg, "head_dim", None) or hidden // n_head
    d_attn = n_head * head_dim  # the width of QKᵀ and AV (query heads × head size)
    n = _matmul_parameters(base)
    full = float(transformer_flops_per_token(n, n_layer, d_attn, seq_len))
    trainable = count_parameters(base, trainable_only=True)
    frozen = sum(p.numel() for p in base.parameters() if not p.requires_grad)
    if frozen == 0:
        return full
    # Frozen weights skip their 2N weight-gradient matmuls (an approximation: the first
    # layer's input gradient is not needed either, and peft's matrices are in both terms).
    return full - 2.0 * max(0, n - trainable)


def final_hidden_states(model: Any, input_ids: Any) -> Any:
    """The last layer's normalised hidden states (batch, seq, d): the model without its
    output layer, for the chunked loss (torchrig.train.linear_ce). transformers' causal LMs
    keep that part as `base_model` (GPT-2's `transformer`, Llama's `model`)."""
    return _base(model).base_model(input_ids=input_ids).last_hidden_state


def output_weight(model: Any) -> Any:
    """The output layer's weight (vocab × d; GPT-2: the tied token embedding). A head with
    a bias is not a plain projection the chunked loss can take over: UsageError."""
    head = _base(model).get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise UsageError(
            f"--loss chunked needs an output layer without bias; {type(_base(model)).__name__} "
            "has none or one with a bias",
            "use --loss full",
        )
    return head.weight
