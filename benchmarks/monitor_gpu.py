"""The metrics service on a real GPU: what the NVML exporter writes, and whether scraping it
every second slows training down (issue 17: at most 1%).

One causal-LM job (GPT-2 124M preset, eager, bf16, random tokens) runs under the job
runner, as `torchrig run` starts it; the exporter runs beside it the whole time, as the
supervisor starts it. A scraper alternates windows of --window seconds: scraping once a
second (on), then not at all (off). Each log interval of the job (metrics.jsonl: its end
time and length) that lies wholly inside one window is counted for that window; throughput
on vs off is the tokens over the wall time of those intervals. Alternating in one run
removes the drift between two runs (clocks, thermals). Warm-up intervals are dropped.

Writes --out (JSON) and, beside it, one scrape's body from mid-run (.prom).

    python benchmarks/monitor_gpu.py --steps 300 --window 8 --out /tmp/r/monitor-gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from train_causal_lm import make_tokens

from torchrig.freeport import free_port


def read_records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if "loss" in rec and "event" not in rec:
            out.append(rec)
    return out


def _step(body: str) -> int:
    """The job's step in a scrape's body (-1 before the job's first record)."""
    for line in body.splitlines():
        if line.startswith("torchrig_train_step{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--preset", default="gpt2-124m")
    parser.add_argument("--n-tokens", type=float, default=40e6)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from torchrig.monitor.exporter import registry_for
    from torchrig.monitor.gpu import Reader

    ws = Path(tempfile.mkdtemp(prefix="monitor-gpu-"))
    tokens = make_tokens(ws / "tokens.bin", int(args.n_tokens), args.vocab)
    job_dir = ws / ".torchrig" / "jobs" / "gpt2-1"
    run = ws / "runs" / "gpt2"
    job = subprocess.Popen(
        [sys.executable, "-m", "torchrig.jobs.runner", "--job-dir", str(job_dir), "--",
         sys.executable, "-m", "torchrig.recipes.causal_lm", "--preset", args.preset,
         "--tokens", str(tokens), "--out", str(run), "--steps", str(args.steps),
         "--log-every", "5", "--ckpt-every", "100000", "--no-compile", "--no-tensorboard"],
        cwd=ws,
    )  # fmt: skip
    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "torchrig.monitor.exporter", "--port", str(port),
         "--workspace", str(ws)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    windows: list[tuple[float, float, bool]] = []
    latencies: list[float] = []
    sample: dict[str, str] = {}
    done = threading.Event()

    def scraper() -> None:
        on = True
        while not done.is_set():
            start = time.time()
            end = start + args.window
            while time.time() < end and not done.is_set():
                if on:
                    began = time.perf_counter()
                    try:
                        body = urllib.request.urlopen(url, timeout=5).read().decode()
                    except OSError:
                        body = ""
                    latencies.append(time.perf_counter() - began)
                    # Keep one scrape from mid-run (the last one would show an idle GPU).
                    if "body" not in sample and _step(body) >= args.steps // 2:
                        sample["body"] = body
                time.sleep(max(0.0, min(1.0, end - time.time())))
            windows.append((start, time.time(), on))
            on = not on

    # NVML as read straight through the collector (also without a running job).
    before = registry_for(ws, Reader())
    from prometheus_client import generate_latest

    idle_text = generate_latest(before).decode()
    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    try:
        rc = job.wait()
    finally:
        done.set()
        for proc in (job, exporter):
            if proc.poll() is None:
                proc.terminate()
            proc.wait()
    thread.join(timeout=args.window + 5)

    records = read_records(run / "metrics.jsonl")
    counted: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for rec in records:
        if rec["step"] - rec["steps_in_interval"] < args.warmup_steps:
            continue
        end = rec["time"]
        begin = end - rec["interval_s"]
        for w0, w1, on in windows:
            if w0 <= begin and end <= w1:
                counted[on].append((rec["tokens_per_s"] * rec["interval_s"], rec["interval_s"]))
    rate = {on: (sum(t for t, _ in v) / sum(s for _, s in v) if v else None)
            for on, v in counted.items()}  # fmt: skip
    import torch

    result = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "job_returncode": rc,
        "steps": args.steps,
        "window_s": args.window,
        "intervals_on": len(counted[True]),
        "intervals_off": len(counted[False]),
        "tokens_per_s_scraped_every_1s": rate[True],
        "tokens_per_s_not_scraped": rate[False],
        "difference": (rate[True] / rate[False] - 1) if rate[True] and rate[False] else None,
        "scrapes": len(latencies),
        "scrape_latency_median_s": sorted(latencies)[len(latencies) // 2] if latencies else None,
        "scrape_latency_max_s": max(latencies) if latencies else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".prom").write_text(sample.get("body", ""))
    args.out.with_suffix(".idle.prom").write_text(idle_text)
    print(json.dumps(result, indent=2))
    os.sync()


if __name__ == "__main__":
    main()
