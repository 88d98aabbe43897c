"""Container engines: the interface, Docker and Podman through their CLIs, and a recording fake."""

from torchrig.engine.base import (
    BuildFailed,
    Engine,
    GpuSelector,
    HealthCheck,
    Mount,
    Port,
    PortMap,
    Progress,
    RunSpec,
)
from torchrig.engine.docker import DockerEngine
from torchrig.engine.fake import RecordingEngine
from torchrig.engine.podman import PodmanEngine
from torchrig.engine.select import choose_engine

__all__ = [
    "BuildFailed",
    "DockerEngine",
    "Engine",
    "GpuSelector",
    "HealthCheck",
    "Mount",
    "PodmanEngine",
    "Port",
    "PortMap",
    "Progress",
    "RecordingEngine",
    "RunSpec",
    "choose_engine",
]
