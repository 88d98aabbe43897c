"""Facts about one machine: what torchrig needs to know to choose, build and run.

A HostFacts value is plain data: it is probed on the machine (`torchrig.host.probe`), or
loaded from a JSON file saved by `torchrig host --json`, so an admin can plan for a GPU
server from a laptop or CI (`--host FILE` on every verb that depends on the host).
"""

from __future__ import annotations

import errno
import json
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from torchrig import userfiles
from torchrig.errors import UsageError

SCHEMA_VERSION = 1
# `torchrig host --json` of a big machine is a few KiB; reading stops past this, so a wrong
# --host (/dev/zero, a disk image) fails at once instead of filling memory.
MAX_HOST_FILE_BYTES = 1 << 20
CC_RE = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}$")
DRIVER_RE = re.compile(r"^[0-9]{2,4}(\.[0-9]{1,3}){1,3}$")
CUDA_RE = re.compile(r"^([0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,3})?)?$")
ARCH_RE = re.compile(r"^[a-z0-9_]{1,32}$")


def clean_text(text: str) -> str:
    """A string from the host made safe to print and to write into TOML comments: control
    characters (escape sequences, newlines, carriage returns), bidi overrides and line
    separators become "?", so a GPU or engine name can neither drive the terminal nor
    forge a line. Every str fact passes through this (see HostText)."""
    return "".join(
        "?" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co") else c for c in text
    )


# Every string fact, whether probed or loaded from a file, is cleaned on the way in.
HostText = Annotated[str, AfterValidator(clean_text)]


class _Fact(BaseModel):
    # strict like the spec: a cc written as 9.0 (a number) or a count as "2" is a broken file.
    model_config = ConfigDict(extra="forbid", strict=True)


class Gpu(_Fact):
    index: int
    name: HostText = Field(
        description="Product name as NVML reports it, e.g. 'NVIDIA H100 80GB HBM3'."
    )
    uuid: HostText = ""
    memory_mib: int | None = None
    cc: HostText | None = Field(
        default=None, description="Compute capability 'major.minor'; None when no source gave it."
    )
    mig: bool | None = Field(default=None, description="MIG mode enabled; None when unknown.")
    pci_bus_id: HostText = ""
    source: Literal["nvml", "proc", "nvidia-smi", "fixture"] = "nvml"

    @field_validator("cc")
    @classmethod
    def _cc(cls, value: str | None) -> str | None:
        if value is not None and not CC_RE.fullmatch(value):
            raise ValueError(f'{json.dumps(value)} is not a compute capability like "9.0"')
        return value


class Driver(_Fact):
    version: HostText = Field(description="NVIDIA kernel driver version, e.g. '580.159.04'.")
    cuda: HostText = Field(
        default="", description="Newest CUDA version this driver supports, e.g. '13.0'."
    )
    source: Literal["nvml", "proc", "nvidia-smi", "fixture"] = "nvml"

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not DRIVER_RE.fullmatch(value):
            raise ValueError(
                f'{json.dumps(value)} is not an NVIDIA driver version like "580.95.05"'
            )
        return value

    @field_validator("cuda")
    @classmethod
    def _cuda(cls, value: str) -> str:
        if not CUDA_RE.fullmatch(value):
            raise ValueError(f'{json.dumps(value)} is not a CUDA version like "13.0"')
        return value


class Engine(_Fact):
    name: Literal["docker", "podman"]
    path: HostText = Field(default="", description="CLI path; '' when the CLI is not installed.")
    client_version: HostText = ""
    server_version: HostText = ""
    reachable: bool = Field(default=False, description="The daemon/service answered.")
    error: HostText = Field(default="", description="Why it is not usable, in one line.")
    rootless: bool | None = None
    nvidia_runtime: bool = Field(
        default=False, description="An 'nvidia' runtime is registered (Docker)."
    )
    cdi_devices: list[HostText] = Field(
        default_factory=list, description="CDI device names found, e.g. 'nvidia.com/gpu=all'."
    )
    storage_path: HostText = Field(default="", description="Where the engine keeps images.")
    storage_free_bytes: int | None = None

    @property
    def present(self) -> bool:
        return bool(self.path)


class System(_Fact):
    os: HostText = Field(default="", description="PRETTY_NAME from /etc/os-release.")
    kernel: HostText = ""
    arch: HostText = "x86_64"
    cpus: int = 0
    memory_bytes: int = 0
    shm_bytes: int | None = Field(default=None, description="Size of /dev/shm.")
    memlock_bytes: int | None = Field(
        default=None, description="RLIMIT_MEMLOCK soft limit; -1 means unlimited."
    )
    glibc: HostText = ""
    user: HostText = ""
    uid: int | None = None
    gid: int | None = None

    @field_validator("arch")
    @classmethod
    def _arch(cls, value: str) -> str:
        if not ARCH_RE.fullmatch(value):
            raise ValueError(
                f'{json.dumps(value)} is not a machine architecture like "x86_64" (uname -m)'
            )
        return value


class HostFacts(_Fact):
    schema_version: int = SCHEMA_VERSION
    collected_at: HostText = Field(default="", description="ISO time of the probe.")
    hostname: HostText = ""
    system: System = Field(default_factory=System)
    driver: Driver | None = None
    gpus: list[Gpu] = Field(default_factory=list)
    engines: list[Engine] = Field(default_factory=list)
    notes: list[HostText] = Field(
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
    """Read facts saved by `torchrig host --json`, validated as strictly as the spec: every
    problem is one UsageError line (exit 2), never a crash later in the resolver."""
    fix = "save it again with `torchrig host --json > host.json` from this torchrig version"
    try:
        # As the owner of its folder: root may be reading a file a user put there (a symlink
        # to a root-only file must not reach an error line).
        raw_bytes = userfiles.read_bytes(path, path.parent, limit=MAX_HOST_FILE_BYTES + 1)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise UsageError(
                f"host facts file {path} does not exist",
                "save one on the target machine with `torchrig host --json > host.json`",
            ) from None
        raise UsageError(
            f"host facts file {path} cannot be read ({exc.strerror or type(exc).__name__})",
            "check the path and that you may read it",
        ) from None
    if len(raw_bytes) > MAX_HOST_FILE_BYTES:
        raise UsageError(
            f"host facts file {path} is larger than {MAX_HOST_FILE_BYTES >> 10} KiB",
            "pass the JSON file that `torchrig host --json` wrote",
        )
    try:
        raw = json.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = _one_line(str(exc))[:120]
        raise UsageError(f"host facts file {path} is not readable JSON ({reason})", fix) from None
    except RecursionError:
        raise UsageError(
            f"host facts file {path} is nested too deeply to be host facts", fix
        ) from None
    if not isinstance(raw, dict):
        kind = type(raw).__name__.replace("dict", "object").replace("NoneType", "null")
        raise UsageError(
            f"host facts file {path}: (top level): expected an object, got {kind}", fix
        )
    try:
        facts = HostFacts.model_validate(raw)
    except ValidationError as exc:
        raise UsageError(f"host facts file {path}: {_explain(exc)}", fix) from None
    if facts.schema_version != SCHEMA_VERSION:
        raise UsageError(
            f"host facts file {path} has schema_version {facts.schema_version}, "
            f"this torchrig reads {SCHEMA_VERSION}",
            "save it again with this torchrig version",
        )
    return facts


def _explain(exc: ValidationError) -> str:
    """The first problem as `key.path: what is wrong`, on one line, with no pydantic wording
    beyond its short message."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "is required but missing"
    return _one_line(f"{where[:80]}: {message}")[:300]


def _one_line(text: str) -> str:
    return clean_text(" ".join(text.split()))
