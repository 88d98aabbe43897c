"""SDPA attention for transformers models that keeps FlashAttention under torch.compile.

transformers builds the causal mask itself and skips it (letting SDPA take `is_causal=True`,
which is what selects the Flash kernel) only when it can prove the mask is plain causal.
Under torch.compile with torch < 2.14 it cannot (dynamo turned `is_exporting()` into True,
see transformers' masking_utils), so every compiled step materialises a [B, 1, T, T] mask
and SDPA falls back to the memory-efficient or math kernel: compiled training gets no
faster than eager (GPT-2 124M on an H100: ~310k tokens/s either way, benchmarks/results).

Training calls are the simple case: whole sequences from position 0, no KV cache and no
padding mask (pretraining windows are full; fine-tuning pads on the right, where a causal
mask alone already keeps real tokens from seeing the padding). Under compile, transformers
also cannot rule out packed sequences (position ids that restart inside a row) and wraps the
mask for them; torchrig's recipes never pass position ids, so positions are always 0..T-1
and that wrapping is moot. For exactly this case the mask function below returns None, and
SDPA runs with is_causal=True. Anything else (a padding mask, a cache, an offset, sliding
windows in the config) goes to transformers' own SDPA mask unchanged.

Use it only for models that train through torchrig's loops (GPT-2 and Llama-style: causal
attention, nothing else); passing position ids that restart (packing) is not supported.
`CAUSAL_SDPA` is registered under its own name, so models built elsewhere keep "sdpa".
"""

from __future__ import annotations

from typing import Any

CAUSAL_SDPA = "torchrig_causal_sdpa"

_registered = False


def register_causal_sdpa() -> str:
    """Register the attention and mask functions once; returns the implementation name."""
    global _registered
    if _registered:
        return CAUSAL_SDPA
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import (
        ALL_MASK_ATTENTION_FUNCTIONS,
        causal_mask_function,
        sdpa_mask,
    )

    def training_causal_mask(
        batch_size: int,
        q_length: int,
        kv_length: int,
        q_offset: Any = 0,
        kv_offset: Any = 0,
        mask_function: Any = causal_mask_function,
        attention_mask: Any = None,
        allow_is_causal_skip: bool = True,
        **kwargs: Any,
    ) -> Any:
        config = kwargs.get("config")
        plain_causal = (
            attention_mask is None
            and getattr(config, "sliding_window", None) is None
            and isinstance(q_offset, int)
            and isinstance(kv_offset, int)
            and q_offset == 0
            and kv_offset == 0
            and q_length == kv_length
        )
        if plain_causal:
            return None  # SDPA then runs with is_causal=True: the Flash kernel
        return sdpa_mask(
            batch_size,
            q_length,
            kv_length,
            q_offset=q_offset,
            kv_offset=kv_offset,
            mask_function=mask_function,
            attention_mask=attention_mask,
            allow_is_causal_skip=allow_is_causal_skip,
            **kwargs,
        )

    AttentionInterface.register(CAUSAL_SDPA, sdpa_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(CAUSAL_SDPA, training_causal_mask)
    _registered = True
    return CAUSAL_SDPA


ATTENTION_CHOICES = ("auto", "flash", "cudnn")


def training_sdpa_backends(device: Any, choice: str = "auto") -> list[Any]:
    """The SDPA kernels a causal-LM training step may use on `device`, in the order to try
    them (pass to `torch.nn.attention.sdpa_kernel(..., set_priority=True)`).

    On Hopper (compute capability 9.0) cuDNN attention first: for GPT-2 124M's causal,
    maskless, 64-wide heads it was faster than FlashAttention-2 (benchmarks/results,
    docs/training.md). Elsewhere FlashAttention-2 first and cuDNN last, torch's own order
    for those GPUs. The memory-efficient and math kernels stay as fallbacks for shapes the
    first ones refuse (head sizes, masks).

    `choice` "flash" or "cudnn" puts that kernel first on any CUDA GPU (the recipe's
    --attention, for measuring one against the other); "auto" is the rule above. A CPU
    has neither, so the choice changes nothing there."""
    if choice not in ATTENTION_CHOICES:
        from torchrig.errors import UsageError

        raise UsageError(
            f"unknown attention kernel {choice!r}", f"use one of: {', '.join(ATTENTION_CHOICES)}"
        )
    from torch.nn.attention import SDPBackend

    flash_first = [
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
        SDPBackend.CUDNN_ATTENTION,
    ]
    if getattr(device, "type", None) != "cuda":
        return flash_first
    import torch

    if choice == "auto":
        hopper = torch.cuda.get_device_capability(device) == (9, 0)
        choice = "cudnn" if hopper and torch.backends.cudnn.is_available() else "flash"
    if choice == "cudnn":
        return [SDPBackend.CUDNN_ATTENTION, *flash_first[:-1]]
    return flash_first


def backend_name(backends: list[Any]) -> str:
    """What a log line calls the first choice: "cuDNN attention", "FlashAttention-2"."""
    names = {"CUDNN_ATTENTION": "cuDNN attention", "FLASH_ATTENTION": "FlashAttention-2"}
    first = getattr(backends[0], "name", str(backends[0]))
    return names.get(first, first.lower().replace("_", " "))
