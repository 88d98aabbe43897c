"""Microbenchmarks: matmul per precision, device copy, pinned host↔device copies.

Timing: CUDA events around each repetition after warm-up, median of the repetitions. Inputs
are random (never zeros: a product on zeros runs faster than on real data), and the
matrices are far larger than L2, so repeated runs do not measure the cache.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from torchrig.bench.model import MATMUL_N


def event_median_ms(torch: Any, fn: Callable[[], Any], warmup: int, reps: int) -> float:
    """Median over `reps` of one call's device time in ms, each bracketed by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    pairs = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(reps)
    ]
    for start, end in pairs:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return float(statistics.median(s.elapsed_time(e) for s, e in pairs))


def matmul_tflops(
    torch: Any, precision: str, n: int = MATMUL_N, warmup: int = 3, reps: int = 10
) -> dict[str, Any]:
    """n×n @ n×n in one precision: TFLOP/s (2n³ per product). tf32 and fp32 both use fp32
    storage; only torch.backends.cuda.matmul.allow_tf32 differs, set here and restored."""
    from torchrig.verify.checks import tf32

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    a = torch.randn(n, n, device="cuda").to(dtype)
    b = torch.randn(n, n, device="cuda").to(dtype)
    out = torch.empty(n, n, device="cuda", dtype=dtype)
    with tf32(torch, precision == "tf32"):
        ms = event_median_ms(torch, lambda: torch.matmul(a, b, out=out), warmup, reps)
    return {"tflops": 2 * n**3 / (ms / 1e3) / 1e12, "ms": ms, "n": n, "reps": reps}


def memcopy_gbs(torch: Any, gib: float = 1.0, warmup: int = 3, reps: int = 20) -> dict[str, Any]:
    """Device-to-device copy of `gib` GiB: GB/s counting bytes read plus bytes written."""
    n = int(gib * 2**30)
    src = torch.randint(0, 256, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = event_median_ms(torch, lambda: dst.copy_(src), warmup, reps)
    return {"gbs": 2 * n / (ms / 1e3) / 1e9, "ms": ms, "bytes": n, "reps": reps}


def pinned_copy_gbs(
    torch: Any, direction: str, mib: int = 512, warmup: int = 2, reps: int = 10
) -> dict[str, Any]:
    """Pinned host memory to the device ("h2d") or back ("d2h"), asynchronous copies."""
    n = mib * 2**20
    host = torch.randint(0, 256, (n,), dtype=torch.uint8).pin_memory()
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    if direction == "h2d":
        ms = event_median_ms(torch, lambda: dev.copy_(host, non_blocking=True), warmup, reps)
    else:
        ms = event_median_ms(torch, lambda: host.copy_(dev, non_blocking=True), warmup, reps)
    return {"gbs": n / (ms / 1e3) / 1e9, "ms": ms, "bytes": n, "reps": reps}


def launch_us(torch: Any, n: int = 3000) -> float:
    """Wall time per launch of a tiny kernel, back to back: the host's share of an eager
    step. A few µs on a fast, idle host; far more on a slow or contended one."""
    x = torch.zeros(1, device="cuda")
    for _ in range(100):
        x.add_(1)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        x.add_(1)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / n * 1e6
