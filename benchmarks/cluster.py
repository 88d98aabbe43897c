"""The Slurm path on the two-node CI cluster (tests/container/slurmlab.py), as root:

1. time from launching `torchrig run --on slurm causal-lm …` to the run's first training
   step (its first metrics record): Plan, sbatch, scheduling, both nodes pulling the image
   by digest (already there: a manifest check), container start, torchrun rendezvous,
   process-group setup, data and model setup, one step;
2. the tiny recipe's throughput on 2 nodes x 1 process vs 1 node x 1 process (CPU, gloo;
   each process keeps its micro-batch, so 2 nodes do twice the tokens per step). Both
   "nodes" share this machine's 2 CPUs: this proves the wiring, not scaling.

    sudo .venv/bin/python benchmarks/cluster.py [--steps 40]

Writes benchmarks/results/cluster-slurm-cpu2-DATE.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import steady, write_result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.container.slurm_project import TRAIN, Cluster, prepared_cluster


def first_step_s(cluster: Cluster, name: str, steps: int, nodes: int) -> float:
    began = time.monotonic()
    cluster.submit(name, *TRAIN, "--steps", str(steps), "--ckpt-every", str(steps), nodes=nodes)
    while not cluster.losses(name):
        if time.monotonic() - began > 600:
            raise SystemExit(f"{name}: no training step within 600 s")
        time.sleep(0.05)
    return time.monotonic() - began


def finish(cluster: Cluster, name: str) -> int:
    """Follow the run to its end; how many times Slurm restarted it (0 for a clean run)."""
    done = cluster.cli("logs", name, "-f", check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}")
    attempts = done.stdout.count("torchrig: job ")
    if attempts != 1:
        print(done.stdout[-4000:], file=sys.stderr)
    return attempts - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    timings: list[tuple[str, str, float]] = []
    runs = {}
    with (
        tempfile.TemporaryDirectory(prefix="t-slurm-bench-") as tmp,
        prepared_cluster(Path(tmp), timings) as cluster,
    ):
        for nodes in (2, 1):
            name = f"t-slurm-bench-{nodes}n"
            to_first = first_step_s(cluster, name, args.steps, nodes)
            restarts = finish(cluster, name)
            rate = steady(cluster.records(name), 5, "tokens_per_s", "tokens_per_s")
            runs[f"{nodes}_nodes"] = {
                "first_step_s": round(to_first, 2),
                "restarts": restarts,
                **rate,
            }
            print(f"{nodes} node(s): first step after {to_first:.1f} s, {rate}", flush=True)
    two, one = runs["2_nodes"]["tokens_per_s"], runs["1_nodes"]["tokens_per_s"]
    path = write_result(
        "cluster-slurm",
        {
            "what": "torchrig run --on slurm on the 2-node CI cluster (Slurm 22.05, Podman "
            "nodes in network namespaces of one 2-CPU machine): launch to first training step, "
            "and causal-LM tiny throughput, 2 nodes x 1 process vs 1 node (CPU, gloo)",
            "steps": args.steps,
            "setup": {what: round(s, 2) for what, _, s in timings},
            "runs": runs,
            "two_over_one_tokens_per_s": round(two / one, 3),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
