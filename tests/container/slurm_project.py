"""The workbench image on the two-node lab (slurmlab.py), ready for `torchrig run --on slurm`:
a project with a [cluster] section, its image built and `torchrig push`ed to the lab's
registry, and a token file for the causal-LM recipe on the shared folder. Used by
test_slurm_cluster.py and benchmarks/cluster.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.container.slurmlab import SlurmLab
from tests.container.workbench import (
    GID,
    UID,
    cpu_spec,
    give_to_user,
    let_owners_in,
    torchrig,
)

PROJECT = "t-slurm-proj"
# The recipe's settings every run shares (each run adds --steps, --ckpt-every, --out).
TRAIN = [
    "--preset", "tiny", "--log-every", "1", "--no-tensorboard", "--no-export",
    "--device", "cpu", "--seq-len", "32", "--micro-batch", "4",
]  # fmt: skip
Timings = list[tuple[str, str, float]]


@dataclass
class Cluster:
    lab: SlurmLab
    project: Path
    tokens: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return torchrig(*args, cwd=self.project, check=check, timeout=600)

    def submit(self, name: str, *recipe_args: str, nodes: int = 2) -> str:
        """`torchrig run --on slurm causal-lm …` with --out SHARED/runs/NAME; the Slurm id."""
        out = self.cli(
            "run", "--engine", "podman", "--on", "slurm", "--json", "--name", name,
            "--nodes", str(nodes), "causal-lm", *recipe_args, "--tokens", str(self.tokens),
            "--out", str(self.lab.shared / "runs" / name),
        )  # fmt: skip
        return str(json.loads(out.stdout)["slurm_id"])

    def records(self, run: str) -> list[dict[str, Any]]:
        path = self.lab.shared / "runs" / run / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def losses(self, run: str) -> dict[int, float]:
        return {int(r["step"]): float(r["loss"]) for r in self.records(run) if "loss" in r}

    def slurm(self, *argv: str) -> str:
        done = subprocess.run(argv, env=self.lab.env, capture_output=True, text=True, check=True)
        return done.stdout

    def explain(self, *runs: str) -> str:
        """Everything that says why a Slurm run went wrong, for a failing test's message:
        each run's output.log (every attempt appends to it) and exit file, `scontrol show
        job` of every job the lab still knows, the lab's job containers and the daemons'
        log tails."""
        parts = []
        for run in runs:
            job_dir = self.lab.shared / "jobs" / run
            for name in ("output.log", "exit"):
                path = job_dir / name
                text = path.read_text(errors="replace") if path.exists() else "(no such file)"
                parts.append(f"--- {run}/{name}\n{text[-12000:]}")
        for argv in (
            ["scontrol", "show", "job"],
            ["podman", "ps", "-a", "--filter", f"name=^torchrig-tslurm{self.lab.tag}-"],
        ):
            done = subprocess.run(argv, env=self.lab.env, capture_output=True, text=True)
            parts.append(f"--- {' '.join(argv)}\n{done.stdout}{done.stderr}")
        parts.append(self.lab.daemon_logs())
        return "\n".join(parts)

    @contextmanager
    def explained(self, *runs: str) -> Iterator[None]:
        """A failure inside (an assertion, a wait that timed out) carries explain(*runs)."""
        try:
            yield
        except (Exception, pytest.fail.Exception) as exc:
            raise AssertionError(f"{exc}\n\n{self.explain(*runs)}") from exc


def _containers_conf(root: Path) -> Path:
    """The machine's containers.conf plus zstd layers: the 2 GB image pushes several times
    faster than with gzip on a 2-CPU machine (CONTAINERS_CONF replaces the machine's file,
    so its settings come along)."""
    system = Path("/etc/containers/containers.conf")
    text = system.read_text() if system.exists() else ""
    if "[engine]" in text:
        text = text.replace("[engine]", '[engine]\ncompression_format = "zstd"', 1)
    else:
        text += '\n[engine]\ncompression_format = "zstd"\n'
    path = root / "containers.conf"
    path.write_text(text)
    return path


@contextmanager
def prepared_cluster(root: Path, timings: Timings) -> Iterator[Cluster]:
    began = time.monotonic()
    lab = SlurmLab.start(root / "lab")
    # The lab's registry speaks plain HTTP: Podman learns that from its registries.conf, as
    # on a real cluster (torchrig passes no TLS switch for a non-loopback registry).
    registries = root / "registries.conf"
    registries.write_text(f'[[registry]]\nlocation = "{lab.registry}"\ninsecure = true\n')
    names = ("SLURM_CONF", "CONTAINERS_REGISTRIES_CONF", "CONTAINERS_CONF")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        SLURM_CONF=str(lab.conf),
        CONTAINERS_REGISTRIES_CONF=str(registries),
        CONTAINERS_CONF=str(_containers_conf(root)),
    )
    project = root / PROJECT
    try:
        timings.append(("slurm lab start", "podman", time.monotonic() - began))
        project.mkdir()
        let_owners_in(project)  # torchrig reads a project with its owner's rights
        spec = cpu_spec(PROJECT, jupyter_port=18993).replace(
            'stack = "minimal"',
            'stack = "minimal"\npackages = ["transformers", "tokenizers", "matplotlib"]',
        )
        spec += (
            f'\n[cluster]\nnodes = 2\nshared_dir = "{lab.shared}"\n'
            f'registry = "{lab.registry}/t-slurm"\nsocket_ifname = "eth0"\n'
            '[cluster.slurm]\nruntime = "podman"\n'
        )
        (project / "torchrig.toml").write_text(spec)
        give_to_user(project, *project.iterdir())
        made = Cluster(lab=lab, project=project, tokens=_tokens(lab.shared))
        began = time.monotonic()
        made.cli("build", "--engine", "podman")
        timings.append(("build (slurm image)", "podman", time.monotonic() - began))
        began = time.monotonic()
        made.cli("push", "--engine", "podman")
        # The project is UID's, as on a laptop; root pushed for it, and wrote the record as UID.
        record = (project / "torchrig.images").stat()
        assert (record.st_uid, record.st_gid) == (UID, GID)
        timings.append(("push to the lab registry", "podman", time.monotonic() - began))
        yield made
    finally:
        lab.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _untag_pulled(project)


def _untag_pulled(project: Path) -> None:
    """Drop the name the nodes pulled (REGISTRY/…@sha256): the lab's address is gone."""
    images = project / "torchrig.images"
    if not images.exists():
        return
    for line in images.read_text().splitlines():
        if line.startswith("ref = "):
            ref = line.split('"')[1]
            subprocess.run(["podman", "rmi", ref], capture_output=True, check=False)


def _tokens(shared: Path) -> Path:
    """A token file for the recipe, made here: the image needs no tokenizer training."""
    from tests.train.conftest import make_corpus
    from torchrig.recipes.causal_lm.data import tokenize_to_bin
    from torchrig.recipes.causal_lm.tokenizer import load_or_train_tokenizer

    corpus = make_corpus(shared / "corpus.txt", lines=600)
    tokenizer = load_or_train_tokenizer(None, [corpus], shared / "tokenizer", 512)
    return Path(tokenize_to_bin([corpus], tokenizer, shared / "corpus.bin"))
