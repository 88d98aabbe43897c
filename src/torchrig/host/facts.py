"""Facts about one machine: what torchrig needs to know to choose, build and run.

A HostFacts value is plain data: it is probed on the machine (`torchrig.host.probe`), or
loaded from a JSON file saved by `torchrig host --json`, so an admin can plan for a GPU
server from a laptop or CI (`--host FILE` on every verb that depends on the host).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from torchrig import userfiles
from torchrig.errors import UsageError

SCHEMA_VERSION = 1


class _Fact(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Gpu(_Fact):
    index: int
    name: str = Field(description="Product name as NVML reports it, e.g. 'NVIDIA H100 80GB HBM3'.")
    uuid: str = ""
    memory_mib: int | None = None
    cc: str | None = Field(
        default=None, description="Compute capability 'major.minor'; None when no source gave it."
    )
    mig: bool | None = Field(default=None, description="MIG mode enabled; None when unknown.")
    pci_bus_id: str = ""
    source: Literal["nvml", "proc", "nvidia-smi", "fixture"] = "nvml"


class Driver(_Fact):
    version: str = Field(description="NVIDIA kernel driver version, e.g. '580.159.04'.")
    cuda: str = Field(
        default="", description="Newest CUDA version this driver supports, e.g. '13.0'."
    )
    source: Literal["nvml", "proc", "nvidia-smi", "fixture"] = "nvml"


class Engine(_Fact):
    name: Literal["docker", "podman"]
    path: str = Field(default="", description="CLI path; '' when the CLI is not installed.")
    client_version: str = ""
    server_version: str = ""
    reachable: bool = Field(default=False, description="The daemon/service answered.")
    error: str = Field(default="", description="Why it is not usable, in one line.")
    rootless: bool | None = None
    nvidia_runtime: bool = Field(
        default=False, description="An 'nvidia' runtime is registered (Docker)."
    )
    cdi_devices: list[str] = Field(
        default_factory=list, description="CDI device names found, e.g. 'nvidia.com/gpu=all'."
    )
    storage_path: str = Field(default="", description="Where the engine keeps images.")
    storage_free_bytes: int | None = None

    @property
    def present(self) -> bool:
        return bool(self.path)


class System(_Fact):
    os: str = Field(default="", description="PRETTY_NAME from /etc/os-release.")
    kernel: str = ""
    arch: Literal["x86_64", "aarch64"] | str = "x86_64"
    cpus: int = 0
    memory_bytes: int = 0
    shm_bytes: int | None = Field(default=None, description="Size of /dev/shm.")
    memlock_bytes: int | None = Field(
        default=None, description="RLIMIT_MEMLOCK soft limit; -1 means unlimited."
    )
    glibc: str = ""
    user: str = ""
    uid: int | None = None
    gid: int | None = None


class HostFacts(_Fact):
    schema_version: int = SCHEMA_VERSION
    collected_at: str = Field(default="", description="ISO time of the probe.")
    hostname: str = ""
    system: System = Field(default_factory=System)
    driver: Driver | None = None
    gpus: list[Gpu] = Field(default_factory=list)
    engines: list[Engine] = Field(default_factory=list)
    notes: list[str] = Field(
        default_factory=list, description="What could not be read, and why (one line each)."
    )

    @property
    def has_nvidia_gpu(self) -> bool:
        return bool(self.gpus)

    def engine(self, name: str) -> Engine | None:
        return next((e for e in self.engines if e.name == name), None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def load_host_facts(path: Path) -> HostFacts:
    """Read facts saved by `torchrig host --json`; bad files are a usage error, not a crash."""
    try:
        # As the owner of its folder: root may be reading a file a user put there (a symlink
        # to a root-only file must not reach an error line).
        raw = json.loads(userfiles.read_bytes(path, path.parent).decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"host facts file {path} does not exist",
            "save one on the target machine with `torchrig host --json > host.json`",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"host facts file {path} is not readable JSON ({exc})",
            "save it again with `torchrig host --json > host.json`",
        ) from None
    try:
        facts = HostFacts.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(
            f"host facts file {path}: {where}: {first['msg']}",
            "save it again with `torchrig host --json > host.json` from this torchrig version",
        ) from None
    if facts.schema_version != SCHEMA_VERSION:
        raise UsageError(
            f"host facts file {path} has schema_version {facts.schema_version}, "
            f"this torchrig reads {SCHEMA_VERSION}",
            "save it again with this torchrig version",
        )
    return facts
