"""Shared helpers for the benchmark scripts: timing, machine description, result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def timed(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 4),
        "min_s": round(min(samples), 4),
        "max_s": round(max(samples), 4),
        "runs": len(samples),
    }


def machine() -> dict[str, Any]:
    from torchrig import __version__

    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "torchrig": __version__,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_write": load_average(),
    }


def load_average() -> list[float]:
    """The host's 1, 5 and 15 minute load: the 2-core machine is shared, so a result says
    how busy it was (compare a run only with its baseline from the same run)."""
    return [round(x, 2) for x in os.getloadavg()]


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    day = dt.date.today().isoformat()
    path = RESULTS / f"{name}-cpu2-{day}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return path


def steady(records: list[dict[str, Any]], after: int, rate: str, name: str) -> dict[str, Any]:
    """A training run's throughput over its log intervals that start after step `after`
    (warm-up and compile excluded): the log records' `rate` (tokens_per_s, samples_per_s)
    weighted by interval time, reported as `name`; MFU and data wait weighted alike."""
    rows = [r for r in records if "loss" in r and r["step"] - r["steps_in_interval"] >= after]
    if not rows:
        raise SystemExit("no log interval after warm-up: raise --steps")
    wall = sum(r["interval_s"] for r in rows)
    mfus = [r["mfu"] for r in rows if r["mfu"] is not None]
    return {
        name: round(sum(r[rate] * r["interval_s"] for r in rows) / wall, 1),
        "mfu": round(sum(m * r["interval_s"] for m, r in zip(mfus, rows, strict=True)) / wall, 4)
        if len(mfus) == len(rows)
        else None,
        "data_wait_share": round(sum(r["data_wait"] * r["interval_s"] for r in rows) / wall, 5),
        "timed_steps": sum(r["steps_in_interval"] for r in rows),
        "timed_s": round(wall, 3),
        "peak_mem_gib": max(r["peak_mem_gib"] for r in rows),
        "loss_last": rows[-1]["loss"],
    }
