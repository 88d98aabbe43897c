"""What a Slurm job is made of: the image by digest, the nodes, and the command.

The image is the one rule every cluster renderer shares, push.record.cluster_image: the
pushed digest of the Plan's build (torchrig.images), or one named by digest; a tag is
refused once a push is on record (exit 2), so every node runs the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torchrig.errors import UsageError
from torchrig.spec.cluster import Cluster
from torchrig.spec.model import Spec

# A recipe module run as `python -m MOD` or a script `python FILE.py`: torchrun takes both.
PYTHON_RE = re.compile(r"^(.*/)?python(3(\.[0-9]+)?)?$")


@dataclass(frozen=True)
class ClusterJob:
    project: str
    image: str
    """NAME@sha256:…"""
    command: tuple[str, ...]
    cluster: Cluster
    nodes: int
    gpus_per_node: int
    runtime: str
    name: str
    """The job's id: the Slurm job name and its folder under the shared folder."""
    resume_flag: bool = False
    """The command is a recipe: a requeued run continues from its last checkpoint."""
    env: dict[str, str] = field(default_factory=dict)
    torchrun: bool = True
    """False: the command runs once per node as given (the node check)."""

    @property
    def job_dir(self) -> str:
        return f"{self.cluster.shared_dir}/jobs/{self.name}"


def cluster_of(spec: Spec) -> Cluster:
    if spec.cluster is None:
        raise UsageError(
            "torchrig.toml has no [cluster] section",
            'add one: [cluster] nodes = 2, shared_dir = "/shared/you/project" (docs/cluster.md)',
        )
    return spec.cluster


def torchrun_command(command: tuple[str, ...]) -> tuple[str, ...] | None:
    """The part after torchrun's options for `python -m MOD …` or `python FILE …`; None for
    anything else (`python -c`, a shell command), which runs as given, once per node."""
    if not command or not PYTHON_RE.match(command[0]):
        return None
    rest = command[1:]
    if rest[:1] == ("-m",) and len(rest) > 1:
        return rest
    if rest and not rest[0].startswith("-"):
        return rest
    return None
