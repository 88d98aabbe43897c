"""One process per GPU through NCCL, as DDP runs: spawn, a TCP store on 127.0.0.1 at a free
port, init_process_group with device_id. Used by verify's all-reduce check and by bench's
bus-bandwidth sweep.

The workers are module-level functions (spawn pickles them by name). Each puts one dict on
the queue; the parent waits with a deadline and ends only the processes it started.
"""

from __future__ import annotations

import datetime as dt
import queue as queue_mod
import time
from collections.abc import Callable
from typing import Any

from torchrig.freeport import free_port
from torchrig.verify.result import CheckResult


def init_rank(rank: int, world: int, port: int) -> Any:
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=dt.timedelta(seconds=120),
        device_id=torch.device("cuda", rank),
    )
    return dist


def _entry(target: Callable[..., dict[str, Any]], rank: int, world: int, port: int,
           args: tuple[Any, ...], out: Any) -> None:  # fmt: skip
    try:
        result = target(rank, world, port, *args)
        out.put({"rank": rank, "ok": True, **result})
    except BaseException as exc:  # reported to the parent, which decides
        out.put({"rank": rank, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
    finally:
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:
            pass


def spawn(
    target: Callable[..., dict[str, Any]],
    world: int,
    args: tuple[Any, ...] = (),
    timeout_s: float = 300.0,
) -> list[dict[str, Any]]:
    """Run `target(rank, world, port, *args)` in `world` spawned processes; their dicts by
    rank. A rank that dies or times out gives {"ok": False, "error": …}."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_entry, args=(target, r, world, port, args, out), daemon=True)
        for r in range(world)
    ]
    for p in procs:
        p.start()
    results: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(results) < world and time.monotonic() < deadline:
        try:
            item = out.get(timeout=1.0)
            results[int(item["rank"])] = item
        except queue_mod.Empty:
            if all(not p.is_alive() for p in procs) and out.empty():
                break
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():  # only the processes started here
            p.kill()
            p.join(timeout=5)
    for r in range(world):
        if r not in results:
            code = procs[r].exitcode
            why = "timed out" if code is None or code == -9 else f"exited with code {code}"
            results[r] = {"rank": r, "ok": False, "error": f"rank {r} {why} without a result"}
    return [results[r] for r in range(world)]


def _allreduce_worker(rank: int, world: int, port: int, numel: int) -> dict[str, Any]:
    import torch

    dist = init_rank(rank, world, port)
    # Integer values well under 2**24: the fp32 sum is exact whatever order NCCL adds in.
    base = torch.arange(numel, device="cuda", dtype=torch.float32).remainder_(4096)
    t = base + float(rank + 1)
    dist.all_reduce(t)
    want = base * world + float(world * (world + 1) // 2)
    torch.cuda.synchronize()
    wrong = int((t != want).sum())
    return {"wrong": wrong, "numel": numel}


def allreduce_check(world: int, numel: int = 32 * 2**20) -> CheckResult:
    """All-reduce of 128 MiB fp32 across every GPU, one process each: the sum is exact."""
    start = time.perf_counter()
    results = spawn(_allreduce_worker, world, (numel,), timeout_s=240)
    errors = [r["error"] for r in results if not r["ok"]]
    wrong = sum(int(r.get("wrong", 0)) for r in results if r["ok"])
    ok = not errors and wrong == 0
    if errors:
        detail = f"NCCL all-reduce across {world} GPUs failed: {errors[0]}"
    else:
        detail = (
            f"{world} processes, {numel * 4 / 2**20:.0f} MiB fp32 each: "
            f"{'exact sum on every rank' if wrong == 0 else f'{wrong} wrong values'}"
        )
    return CheckResult(
        "nccl all-reduce",
        "pass" if ok else "fail",
        detail,
        numbers={"world_size": world, "numel": numel, "wrong": wrong, "errors": errors},
        seconds=round(time.perf_counter() - start, 2),
    )
