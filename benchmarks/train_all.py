"""The three recipe benchmarks in one GPU call (issue 18, items 1-3), each with its plain
loop in the same process, inside one time budget.

    python benchmarks/train_all.py                  # ~8.5 minutes on an H100
    python benchmarks/train_all.py --only tc lm     # a subset

Runs, in this order, each as its own process with its own time limit:

    tc  train_text_classify.py --micro-batches 32 --compare-graphs   (~200 s on an H100)
    ic  train_image_classify.py                                     (~170 s)
    lm  train_causal_lm.py --model gpt2-124m --runs 1               (~150 s)

The limits are those times with a margin, shrunk to what is left of --budget-s; a
benchmark that would get less than a minute is skipped and says so. Each one writes its
result JSON into benchmarks/results/ (its default name: recipe, GPU, date) and prints a
`result ...` line per phase as soon as it is measured, so a benchmark cut by its limit
still leaves its numbers in its log (--logs, one file per benchmark). The last lines are
one summary line per benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = {  # name: (script and arguments, seconds it took on an H100 with a margin)
    "tc": (["train_text_classify.py", "--micro-batches", "32", "--compare-graphs"], 240),
    "ic": (["train_image_classify.py"], 200),
    "lm": (["train_causal_lm.py", "--model", "gpt2-124m", "--runs", "1"], 180),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=list(BENCHMARKS))
    p.add_argument("--budget-s", type=float, default=570.0, help="all benchmarks together")
    p.add_argument("--logs", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "train-logs")
    args = p.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    summary: dict[str, str] = {}
    for name in [n for n in BENCHMARKS if n in args.only]:
        cmd, usual = BENCHMARKS[name]
        left = args.budget_s - (time.monotonic() - began)
        limit = min(usual, left)
        if limit < 60:
            summary[name] = f"skipped: {left:.0f} s of --budget-s left"
            continue
        log = args.logs / f"{name}.log"
        print(f"== {name}: {' '.join(cmd)} (limit {limit:.0f} s, log {log})", flush=True)
        start = time.monotonic()
        with log.open("w") as handle:
            # Its own process group: the causal-LM benchmark starts torchrun and workers,
            # and a cut must stop them all, or they keep the GPU for the next benchmark.
            proc = subprocess.Popen(
                [sys.executable, str(HERE / cmd[0]), *cmd[1:]],
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            code: int | None
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                code = None
        took = time.monotonic() - start
        results = [line for line in log.read_text().splitlines() if line.startswith("result ")]
        state = "cut at its limit" if code is None else f"exit {code}"
        summary[name] = f"{state} after {took:.0f} s; " + (" | ".join(results) or "no result")
    for name, line in summary.items():
        print(f"{name}: {line}")
    print(json.dumps({"total_s": round(time.monotonic() - began, 1)}))


if __name__ == "__main__":
    main()
