"""Will one training step fit in memory? An estimate made before any data is read, so that
a sequence length of 100,000 is refused in a second instead of swapping for minutes.

The estimate is the usual one for transformer training (Korthikanti et al., "Reducing
Activation Recomputation in Large Transformer Models", 2022, section 4.1): the activations
kept for the backward pass of one layer are s·b·h·(34 + 5·a·s/h) bytes with 16-bit
activations (s tokens, b sequences, h width, a heads); twice that in fp32. The 5·a·s/h
term is the attention matrix: fused attention kernels (FlashAttention, memory-efficient
attention: CUDA) do not keep it, PyTorch's CPU attention does. Weights, gradients and
AdamW's two moments add 16 bytes per parameter (fp32 master weights). Only a step that
clearly cannot fit is refused: the estimate leaves out the allocator's overhead and the
logits, so a step it allows may still run out of memory, never the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchrig.errors import UsageError

GIB = 1 << 30


def step_bytes(
    *,
    layers: int,
    hidden: int,
    heads: int,
    seq_len: int,
    batch: int,
    parameters: int,
    fused_attention: bool,
    bytes_per_value: int,
) -> int:
    """Bytes one training step keeps: activations of `batch` sequences plus the training
    state of `parameters` weights."""
    per_value = 34 + (0 if fused_attention else 5 * heads * seq_len / hidden)
    activations = seq_len * batch * hidden * per_value * layers * (bytes_per_value / 2)
    return int(activations + 16 * parameters)


def _cgroup_free() -> int | None:
    """What the cgroup (a container's --memory) still allows, if it sets a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    if limit == "max":
        return None
    try:
        return max(0, int(limit) - used)
    except ValueError:
        return None


def available_bytes(device: Any) -> int | None:
    """Free memory where the step runs: the GPU's, or the host's (and its cgroup's)."""
    if getattr(device, "type", None) == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    found: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        found = None
    limit = _cgroup_free()
    if limit is not None:
        found = limit if found is None else min(found, limit)
    return found


def check_fits(need: int, device: Any, what: str, fix: str) -> None:
    """UsageError when `need` bytes clearly exceed the free memory of `device`."""
    free = available_bytes(device)
    if free is None or need <= free:
        return
    where = "GPU" if getattr(device, "type", None) == "cuda" else "host"
    raise UsageError(
        f"{what} needs about {need / GIB:.1f} GiB for one step; the {where} has "
        f"{free / GIB:.1f} GiB free",
        fix,
    )
