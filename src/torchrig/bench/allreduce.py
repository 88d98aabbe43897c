"""NCCL all-reduce bus bandwidth over message sizes, one process per GPU (nccl-tests' way).

algbw = bytes / time; busbw = algbw × 2(n − 1)/n, the rate each GPU's link must sustain,
comparable across GPU counts. fp32 sum, in place (as DDP calls it). Time per size: CUDA
events around `iters` back-to-back calls after a warm-up, averaged (as nccl-tests does),
the slowest rank's time counted.
"""

from __future__ import annotations

from typing import Any

from torchrig.bench.model import busbw

SIZES_FULL = [2**20 * m for m in (1, 4, 16, 64, 256, 1024)]  # bytes: 1 MiB … 1 GiB
SIZES_QUICK = [2**20 * m for m in (16, 256, 1024)]


def _sweep_worker(rank: int, world: int, port: int, sizes: list[int], iters: int) -> dict[str, Any]:
    import torch

    from torchrig.verify.nccl import init_rank

    dist = init_rank(rank, world, port)
    rows = []
    for size in sizes:
        t = torch.ones(size // 4, device="cuda", dtype=torch.float32)
        for _ in range(5):
            dist.all_reduce(t)
        torch.cuda.synchronize()
        dist.barrier()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            dist.all_reduce(t)
        end.record()
        end.synchronize()
        ms = torch.tensor([start.elapsed_time(end) / iters], device="cuda")
        dist.all_reduce(ms, op=dist.ReduceOp.MAX)
        seconds = float(ms) / 1e3
        alg = size / seconds / 1e9
        rows.append(
            {
                "bytes": size,
                "time_us": round(seconds * 1e6, 1),
                "algbw_gbs": round(alg, 2),
                "busbw_gbs": round(busbw(alg, world), 2),
            }
        )
        del t
    return {"rows": rows}


def sweep(world: int, quick: bool = False) -> dict[str, Any]:
    from torchrig.verify.nccl import spawn

    sizes = SIZES_QUICK if quick else SIZES_FULL
    results = spawn(_sweep_worker, world, (sizes, 10 if quick else 20), timeout_s=300)
    errors = [r["error"] for r in results if not r["ok"]]
    if errors:
        return {"world_size": world, "error": errors[0], "rows": []}
    return {"world_size": world, "dtype": "float32", "op": "sum", "rows": results[0]["rows"]}
