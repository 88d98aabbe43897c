"""A real two-node Slurm cluster (slurmlab.py): the workbench image, pushed to a registry by
`torchrig push`, pulled by digest with Podman on both nodes, trains the causal-LM recipe
(tiny preset, CPU, gloo) across 2 nodes x 1 process through the generated sbatch script.

One node's training is killed mid-run (SIGKILL of its container, as when a node dies): the
run fails, requeues itself, resumes from the last complete checkpoint and ends with the same
loss at every step as an uninterrupted 2-node run. `run --on slurm -- python -c …` returns
the command's exit code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.conftest import Timings
from tests.container.slurm_project import TRAIN, Cluster, prepared_cluster
from tests.container.workbench import wait_until

pytestmark = pytest.mark.container

STEPS, CKPT_EVERY, KILL_AFTER = 24, 8, 11


@pytest.fixture(scope="module")
def cluster(timings: Timings) -> Iterator[Cluster]:
    # Not under pytest's basetemp: a concurrent pytest session makes that 0700 again, and
    # torchrig reads the project with its owner's rights.
    root = Path(tempfile.mkdtemp(prefix="t-slurm-"))
    try:
        with prepared_cluster(root, timings) as made:
            yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _submit(cluster: Cluster, name: str) -> str:
    return cluster.submit(name, *TRAIN, "--steps", str(STEPS), "--ckpt-every", str(CKPT_EVERY))


@pytest.mark.xfail(
    strict=False,
    reason="open (issue 14): on a clean CI machine (2026-12-07, twice) the requeued attempt "
    "ended FAILED with exit 1 in its first second (RunTime 0) after the script's "
    "`scontrol requeue`; it passed twice on a warm machine. Shown as XFAIL, never skipped.",
)
def test_two_nodes_train_resume_after_a_node_dies_and_match_an_uninterrupted_run(
    cluster: Cluster, timings: Timings
) -> None:
    with cluster.explained("t-slurm-straight", "t-slurm-split"):
        began = time.monotonic()
        _submit(cluster, "t-slurm-straight")
        done = cluster.cli("logs", "t-slurm-straight", "-f", check=False)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        timings.append(("2-node run, 24 steps", "podman", time.monotonic() - began))
        straight = cluster.losses("t-slurm-straight")
        assert sorted(straight) == list(range(1, STEPS + 1))
        assert "2 process(es)" in done.stdout

        slurm_id = _submit(cluster, "t-slurm-split")
        lab = cluster.lab
        run = cluster.lab.shared / "runs" / "t-slurm-split"
        wait_until(lambda: max(cluster.losses("t-slurm-split"), default=0) >= KILL_AFTER, 300,
                   f"step {KILL_AFTER} of the run to be killed")  # fmt: skip
        # A node dies: its training container is killed outright, no checkpoint on the way out.
        subprocess.run(
            ["podman", "kill", "--signal", "KILL", f"torchrig-tslurm{lab.tag}-{slurm_id}-0-1"],
            capture_output=True,
            check=True,
        )

        def requeued() -> bool:
            info = cluster.slurm("scontrol", "show", "job", "-o", slurm_id)
            if "Restarts=1" not in info:
                return False
            if "JobState=PENDING" in info and "Reason=BeginTime" in info:
                # Slurm holds a requeued job back for a while; a test need not wait it out.
                subprocess.run(
                    ["scontrol", "update", f"JobId={slurm_id}", "StartTime=now"],
                    env=cluster.lab.env,
                    capture_output=True,
                    check=False,
                )
            return True

        wait_until(requeued, 120, "the failed run to requeue itself")
        done = cluster.cli("logs", "t-slurm-split", "-f", check=False)
        job = cluster.slurm("scontrol", "show", "job", "-o", slurm_id)
        assert done.returncode == 0, f"{job}\n{done.stdout[-5000:]}\n{done.stderr[-2000:]}"
        assert "the run failed" in done.stdout and "attempt 2" in done.stdout
        resumed = [line for line in done.stdout.splitlines() if "resum" in line.lower()]
        assert any(f"step {KILL_AFTER // CKPT_EVERY * CKPT_EVERY}" in line for line in resumed), (
            resumed
        )
        split = cluster.losses("t-slurm-split")
        assert split[STEPS] == straight[STEPS], (split[STEPS], straight[STEPS])
        assert {s: split[s] for s in straight} == straight
        assert (run / "checkpoints").is_dir()
        jobs = {j["id"]: j for j in json.loads(cluster.cli("jobs", "--json").stdout)}
        assert jobs["t-slurm-split"]["container"] == f"slurm:{slurm_id}"


def test_a_command_returns_its_exit_code(cluster: Cluster) -> None:
    done = cluster.cli(
        "run", "--engine", "podman", "--on", "slurm", "--name", "t-slurm-exit", "-f",
        "--", "python", "-c", "import sys; print('ran'); sys.exit(3)",
        check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.count("ran") == 2  # once per node


def test_verify_nodes_sees_every_node_join_and_all_reduce(cluster: Cluster) -> None:
    done = cluster.cli("verify", "--nodes", "--engine", "podman", check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 node(s) joined (node1, node2); all-reduce over gloo: ok" in done.stdout


def test_verify_nodes_names_the_node_that_cannot_reach_the_first(cluster: Cluster) -> None:
    """node2 may not open a connection to node1's rendezvous store (a firewall rule in its
    namespace): the check names node2 and the likely causes, exit 1, no hang."""
    lab = cluster.lab
    rule = [
        "OUTPUT", "-p", "tcp", "-d", lab.node_addr("node1"), "--dport", "29501", "-j", "DROP",
    ]  # fmt: skip
    firewall = [*lab.enter("node2"), "iptables"]
    subprocess.run([*firewall, "-A", *rule], check=True, capture_output=True)
    try:
        done = cluster.cli(
            "verify", "--nodes", "--engine", "podman", "--join-timeout", "10", check=False
        )
    finally:
        subprocess.run([*firewall, "-D", *rule], check=False, capture_output=True)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "node(s) node2 did not join the rendezvous at" in done.stdout
    assert "firewall" in done.stdout and "NCCL_SOCKET_IFNAME" in done.stdout
