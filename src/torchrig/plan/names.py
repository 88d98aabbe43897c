"""The names a project's workbench goes by in the engine, from its spec alone.

Verbs that only reach an existing workbench (down, status, logs, exec, shell, stop, jobs)
find it by these without resolving PyTorch; the Plan carries the same names.
"""

from __future__ import annotations

from torchrig.spec.model import Spec

IMAGE_REPOSITORY_PREFIX = "torchrig"
PROJECT_LABEL = "io.torchrig.project"
WORKSPACE_LABEL = "io.torchrig.workspace"


def container_name(spec: Spec) -> str:
    return f"torchrig-{spec.project.name}"


def state_volume(spec: Spec) -> str:
    """The volume mounted as the workbench user's home: kept across `down` and rebuilds."""
    return f"torchrig-{spec.project.name}-state"


def network_name(spec: Spec) -> str:
    """The workbench's own network: no other container shares a bridge with its services."""
    return f"torchrig-{spec.project.name}-net"


def image_repository(spec: Spec) -> str:
    """The image's name without the tag; the tag is `<variant>-<content digest>`."""
    return f"{IMAGE_REPOSITORY_PREFIX}/{spec.project.name}"
