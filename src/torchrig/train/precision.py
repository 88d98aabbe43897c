"""Numeric precision and compilation, decided once from the device.

    auto on CUDA with bf16 (Ampere and newer)  bf16 autocast, fp32 master weights, no scaler
    auto on older CUDA GPUs (V100, T4)         fp16 autocast with a GradScaler (fp16's small
                                               range underflows gradients without scaling)
    auto on CPU                                fp32 (CPU autocast is slow and exists to save
                                               memory, not time)

TF32 is allowed for what stays fp32 on CUDA: it is what the tensor cores run fp32 matmuls
with, at ~8x the plain fp32 rate, with a 10-bit mantissa that training tolerates.

torch.compile is on by default on CUDA (GPT-2 124M: 304k → 454k tokens/s on an H100,
FACTS.md) and off on CPU, where the first compile costs more than a short run gains.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

from torchrig.errors import UsageError

PrecisionName = Literal["auto", "bf16", "fp16", "fp32"]
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class Precision:
    name: Literal["bf16", "fp16", "fp32"]
    device_type: str  # "cuda" or "cpu"
    dtype: Any  # torch.bfloat16, torch.float16 or None (no autocast)
    scaler: Any  # torch.amp.GradScaler for fp16, else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        ctx: contextlib.AbstractContextManager[Any] = torch.autocast(
            self.device_type, dtype=self.dtype
        )
        return ctx

    def backward(self, loss: Any) -> None:
        """Backward through the loss, scaled first under fp16 (small gradients would
        underflow to zero in fp16 otherwise)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()


def resolve_precision(requested: str, device: Any) -> Precision:
    """The precision to train in on `device` (a torch.device); a request the device cannot
    run is a UsageError rather than a silent fallback."""
    import torch

    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}", f"use one of: {', '.join(PRECISIONS)}")
    kind = device.type
    if kind == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        bf16_ok = bool(torch.cuda.is_bf16_supported())
        name = requested if requested != "auto" else ("bf16" if bf16_ok else "fp16")
        if name == "bf16" and not bf16_ok:
            raise UsageError(
                f"{torch.cuda.get_device_name(device)} has no bf16 support",
                "use --precision fp16 (or auto)",
            )
    else:
        name = "fp32" if requested == "auto" else requested
        if name == "fp16":
            raise UsageError("fp16 training needs a CUDA GPU", "use --precision fp32 or bf16")
    if name == "bf16":
        return Precision("bf16", kind, torch.bfloat16, None)
    if name == "fp16":
        return Precision("fp16", kind, torch.float16, torch.amp.GradScaler(kind))
    return Precision("fp32", kind, None, None)


def should_compile(requested: bool | None, device: Any) -> bool:
    """--compile/--no-compile win; by default compile on CUDA only."""
    if requested is not None:
        return requested
    return bool(device.type == "cuda")


# What --tune-kernels may ask of inductor, cheapest first. "blocks": coordinate-descent
# tuning of its Triton kernels' block sizes. "gemm": each matmul also tries inductor's
# Triton templates (persistent TMA ones on Hopper) against cuBLAS, benchmarked with the
# pointwise work that follows fused into the template's epilogue (GPT-2's bias + GELU and,
# backward, the GELU gradient): the matmul's output then need not be written and read
# again. "max": both. Each costs first-compile time (minutes), then comes from inductor's
# on-disk cache.
KERNEL_TUNINGS = ("off", "blocks", "gemm", "max")


def kernel_tuning(level: str) -> contextlib.AbstractContextManager[Any]:
    """Inductor's kernel tuning at `level` (KERNEL_TUNINGS) while the context is open
    (compiles happen at the first call, so open it around the whole run); the process's
    settings are restored after. "off": nothing changes."""
    if level not in KERNEL_TUNINGS:
        raise ValueError(f"unknown kernel tuning {level!r}")
    if level == "off":
        return contextlib.nullcontext()
    import torch._inductor.config as inductor

    changes: dict[str, Any] = {}
    if level in ("blocks", "max"):
        changes["coordinate_descent_tuning"] = True
    if level in ("gemm", "max"):
        changes.update(
            {
                "max_autotune_gemm": True,
                "max_autotune_gemm_backends": "ATEN,TRITON",
                "triton.enable_persistent_tma_matmul": True,
            }
        )
    patch: contextlib.AbstractContextManager[Any] = inductor.patch(changes)
    return patch
