"""The spec, `torchrig.toml`: a strict model of what a person asks for.

Unknown keys are rejected (a typo must never be silently ignored) and every field carries a
description: the same text feeds `torchrig schema`, the generated reference in docs/ and the
comments `torchrig init` writes. Validation here is about the file alone (types, ranges,
syntax); whether a request can be met on a host is the resolver's job.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, Field, field_validator, model_validator

from torchrig.compat.mirrors import find_preset, preset_names
from torchrig.spec.cluster import Cluster
from torchrig.spec.invalid import Invalid as Invalid
from torchrig.spec.invalid import StrictTable, must_match, quoted
from torchrig.spec.lab import Lab

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SIZE_RE = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?[kmgt]?$", re.IGNORECASE)
VARIANT_RE = re.compile(r"^(auto|cpu|cu1[0-9]{2})$")
DISTRO_RE = re.compile(r"^(auto|(debian|ubuntu):[a-z]+)$")
APT_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:*-]+)?$")
PYTHON_RE = re.compile(r"^(auto|3\.[0-9]{1,2})$")
IMAGE_RE = re.compile(r"[^\s@]+@sha256:[0-9a-f]{64}")
# sources.registry: auto, none, or a Docker Hub mirror as host[:port][/path].
REGISTRY_RE = re.compile(
    r"^(auto|none|[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*)$"
)

HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
# Where the shared Hugging Face cache volume is mounted (workbench/caches.py has the same).
HF_CACHE_TARGET = "/cache/huggingface"
# Container paths a mount may not be, or be inside: the workbench's own folders (the
# workspace, the home in the state volume, the cache), the system and the venv, and the
# kernel's and torchrig's runtime folders. A mount inside /workspace would also leave an empty
# root-owned folder in the project on the host (the engine makes the mount point there).
RESERVED_TARGETS = (
    "/workspace",
    "/home",
    "/root",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/opt/venv",
    "/opt/torchrig",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/boot",
    "/tmp",
    HF_CACHE_TARGET,
)
# Characters that would split an engine's --mount value or a compose entry.
MOUNT_PATH_BAD = re.compile(r"[,\"'\x00-\x1f\x7f]")

# Bounds that catch typos and absurd values; each is named in its error message.
# pid_max can be at most 2^22 on 64-bit Linux (PID_MAX_LIMIT).
MAX_PIDS = 4_194_304
# NR_CPUS is at most 8192 in Linux (CONFIG_MAXSMP); no container gets more.
MAX_CPUS = 8192
# No machine has more RAM than this; a size above it is a typo.
MAX_SIZE, MAX_SIZE_TEXT = 64 << 40, "64t"
# Below these a PyTorch workbench cannot start (torch alone imports into ~0.5 GiB) and
# DataLoader workers fail; 64m is Docker's own /dev/shm default.
MIN_MEMORY, MIN_MEMORY_TEXT = 1 << 30, "1g"
MIN_SHM, MIN_SHM_TEXT = 64 << 20, "64m"


def parse_size(text: str) -> int:
    """'16g' → bytes. Binary units, as Docker reads them."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    unit = text[-1].lower() if text[-1].isalpha() else ""
    number = text[:-1] if unit else text
    return int(float(number) * units[unit])


def _check_size(value: str, *, allow: tuple[str, ...], least: tuple[int, str]) -> str:
    if value in allow:
        return value
    allowed = " or ".join(f'"{a}"' for a in allow if a)
    if not SIZE_RE.fullmatch(value):
        raise Invalid(
            f"{quoted(value)} is not a size",
            'write a number with a unit like "16g" or "512m" (no space; k, m, g, t)'
            + (f", or {allowed}" if allowed else ""),
        )
    low, low_text = least
    try:
        size = parse_size(value)
    except OverflowError:  # more digits than a float holds: certainly too large
        size = MAX_SIZE + 1
    if not low <= size <= MAX_SIZE:
        side = f"less than {low_text}" if size < low else f"more than {MAX_SIZE_TEXT}"
        raise Invalid(
            f"{quoted(value)} is {side}",
            f'write a size from "{low_text}" to "{MAX_SIZE_TEXT}"'
            + (f", or {allowed}" if allowed else ""),
        )
    return value


class Project(StrictTable):
    name: str = Field(
        description="Names the image, the container and its volumes: lower case letters, "
        "digits, '.', '_' and '-'.",
        # Patterns in the schema are for editors; the validators below give the messages.
        json_schema_extra={"pattern": NAME_RE.pattern},
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return must_match(
            value,
            NAME_RE.fullmatch,
            "is not a valid name",
            'use lower case letters, digits, ".", "_" or "-", starting with a letter or '
            "digit (at most 63 characters)",
        )


class Torch(StrictTable):
    version: str = Field(
        default="latest",
        description='PyTorch to install: "latest", an exact version ("2.13.0"), a release '
        'line ("2.13" = newest 2.13.x) or a range (">=2.8,<2.12").',
    )
    variant: str = Field(
        default="auto",
        json_schema_extra={"pattern": VARIANT_RE.pattern},
        description='Build variant: "auto" (the newest build this host\'s driver and GPUs can '
        'run), "cpu", or a CUDA variant such as "cu126", "cu128", "cu130", "cu132".',
    )
    flavour: Literal["runtime", "devel"] = Field(
        default="runtime",
        description='"runtime" keeps a C compiler and Python headers so torch.compile works; '
        '"devel" adds nvcc and the CUDA headers for building extensions.',
    )
    torchvision: bool = Field(default=True, description="Install the matching torchvision.")
    torchaudio: bool = Field(
        default=False,
        description="Install the matching torchaudio (none is released for torch 2.12+).",
    )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.strip()
        if value == "latest":
            return value
        fix = 'write "latest", "2.13.0", "2.13" or ">=2.8,<2.12"'
        try:
            if value[:1].isdigit():
                version = Version(value)
                if version.local:
                    raise Invalid(
                        f"{quoted(value)} names a build variant",
                        f'write version = "{version.public}" and put the variant '
                        f'("{version.local}") in torch.variant',
                    )
                if len(version.release) < 2:
                    raise Invalid(f"{quoted(value)} is too vague to be a release line", fix)
            elif not value or not str(SpecifierSet(value)):
                raise Invalid(f"{quoted(value)} is not a version", fix)
        except (InvalidVersion, InvalidSpecifier):
            raise Invalid(
                f"{quoted(value)} is not a version, a release line or a range", fix
            ) from None
        return value

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        return must_match(
            value,
            VARIANT_RE.fullmatch,
            "is not a build variant",
            'use "auto", "cpu" or a CUDA variant like "cu128" or "cu130" '
            "(torchrig builds NVIDIA CUDA workbenches only)",
        )

    def specifier(self) -> SpecifierSet | None:
        """The version request as a specifier; None means latest."""
        if self.version == "latest":
            return None
        if not self.version[:1].isdigit():
            return SpecifierSet(self.version)
        release = Version(self.version).release
        if len(release) == 2:  # a release line: any patch of it
            return SpecifierSet(f"=={self.version}.*")
        return SpecifierSet(f"=={self.version}")


class Python(StrictTable):
    version: str = Field(
        default="auto",
        json_schema_extra={"pattern": PYTHON_RE.pattern},
        description='CPython version ("3.12"), or "auto" for the base distribution\'s python3. '
        "torchrig uses the distribution's interpreter, so this and the base must agree.",
    )
    packages: list[str] = Field(
        default_factory=list,
        description='Extra Python requirements (PEP 508), e.g. ["peft>=0.13", "wandb"].',
    )
    stack: Literal["workbench", "minimal", "none"] = Field(
        default="workbench",
        description='What torchrig adds beside torch: "workbench" (JupyterLab, NumPy, pandas, '
        'Transformers, TensorBoard …), "minimal" (JupyterLab and NumPy only) or "none".',
    )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        return must_match(
            value,
            PYTHON_RE.fullmatch,
            "is not a Python 3 minor version",
            'write e.g. "3.12", or "auto"',
        )

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            try:
                Requirement(item)
            except InvalidRequirement as exc:
                # packaging's message carries a caret diagram on later lines: keep the first.
                reason = str(exc).splitlines()[0].rstrip(" .") if str(exc) else "unparsable"
                raise Invalid(
                    f"{quoted(item)} is not a valid requirement ({reason[:1].lower()}{reason[1:]})",
                    'write a PEP 508 requirement, e.g. "peft>=0.13" or "wandb"',
                    at=(index,),
                ) from None
        return value


class Base(StrictTable):
    distribution: str = Field(
        default="auto",
        json_schema_extra={"pattern": DISTRO_RE.pattern},
        description='Base distribution and release: "ubuntu:noble", "ubuntu:jammy", '
        '"debian:bookworm", "debian:trixie", or "auto" (the one whose python3 matches '
        "python.version; ubuntu:noble when that is auto too).",
    )
    image: str = Field(
        default="",
        description="A registry image to build on instead of a distribution, pinned by digest "
        '("registry/name:tag@sha256:…"). It must be Debian or Ubuntu based.',
    )
    packages: list[str] = Field(
        default_factory=list,
        description='Extra system (apt) packages, e.g. ["ffmpeg", "git-lfs"].',
    )
    allow_unverified: bool = Field(
        default=False,
        description="Bootstrap the distribution even when no archive keyring can check its "
        "package signatures (torchrig ships Debian's and Ubuntu's, so only a changed torchrig "
        "install needs this). Not recommended: anyone between you and the mirror could change "
        "the base.",
    )

    @field_validator("distribution")
    @classmethod
    def _distribution(cls, value: str) -> str:
        return must_match(
            value,
            DISTRO_RE.fullmatch,
            "is not a distribution",
            'write "ubuntu:noble", "ubuntu:jammy", "debian:bookworm", "debian:trixie" or "auto"',
        )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return must_match(
            value,
            IMAGE_RE.fullmatch,
            "is not an image reference pinned by digest",
            'append "@sha256:<64 hex digits>" (see `docker buildx imagetools inspect '
            "IMAGE`) so every build gets the same base",
            optional=True,
        )

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            must_match(
                item,
                APT_PACKAGE_RE.fullmatch,
                "is not an apt package name",
                'write e.g. "ffmpeg" or "git=1:2.39.5-0+deb12u2"',
                at=(index,),
            )
        return value

    @model_validator(mode="after")
    def _one_base(self) -> Base:
        if self.image and self.distribution != "auto":
            raise Invalid(
                "is set together with base.distribution",
                'set either "distribution" or "image", not both (an image brings its own '
                "distribution)",
                at=("image",),
            )
        return self


class User(StrictTable):
    name: str = Field(
        default="auto",
        description='Workbench user inside the container; "auto" takes the host user\'s name '
        '("rig" when that is root).',
    )
    uid: int | Literal["auto"] = Field(
        default="auto",
        description="UID inside the container, so workspace files belong to you on the host; "
        '"auto" takes the host user\'s.',
    )
    gid: int | Literal["auto"] = Field(
        default="auto", description='GID inside the container; "auto" takes the host user\'s.'
    )
    authorized_keys: list[str] = Field(
        default_factory=list,
        description="SSH public keys (lines, or paths to .pub files) allowed to log in; empty "
        "takes the host user's ~/.ssh/*.pub.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value == "root":
            raise Invalid('the workbench never runs as "root"', 'pick another name, or "auto"')
        if value != "auto" and not USER_RE.fullmatch(value):
            raise Invalid(
                f"{quoted(value)} is not a valid user name",
                'use lower case letters, digits, "_" and "-", e.g. "alice", or "auto"',
            )
        return value

    @field_validator("uid", "gid")
    @classmethod
    def _id(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 2147483646:
            raise Invalid(
                f"{value} is out of range" + (" (0 is root)" if value == 0 else ""),
                'use 1 to 2147483646, or "auto" for the host user\'s',
            )
        return value


Port = Annotated[int, Field(ge=0, le=65535)]


_PORT_HELP = (
    "Host port on 127.0.0.1; 0 picks a free one. If taken, the next free port is used and reported."
)


class Service(StrictTable):
    """A service of the workbench; each kind below sets its own defaults."""

    enabled: bool = Field(default=True, description="Run this service in the workbench.")
    port: Port = Field(description=_PORT_HELP)


# One class per service so a table that only says `enabled = false` is complete.
class JupyterService(Service):
    port: Port = Field(default=8888, description=_PORT_HELP)


class SshService(Service):
    port: Port = Field(default=2222, description=_PORT_HELP)


class TensorBoardService(Service):
    enabled: bool = Field(default=False, description="Run this service in the workbench.")
    port: Port = Field(default=6006, description=_PORT_HELP)


class MetricsService(Service):
    port: Port = Field(default=9400, description=_PORT_HELP)


class ServeService(Service):
    enabled: bool = Field(
        default=False,
        description="Lock torchrig serve's packages (fastapi, uvicorn, prometheus-client) and "
        "publish its port; start it with `torchrig run serve RUN`.",
    )
    port: Port = Field(default=8000, description=_PORT_HELP)


class Services(StrictTable):
    jupyter: JupyterService = Field(
        default_factory=JupyterService,
        description="JupyterLab, behind a generated token, on 127.0.0.1 only.",
    )
    ssh: SshService = Field(
        default_factory=SshService,
        description="OpenSSH: key-only, no root login, only the workbench user.",
    )
    tensorboard: TensorBoardService = Field(
        default_factory=TensorBoardService,
        description="TensorBoard on the workspace's runs/ folder.",
    )
    metrics: MetricsService = Field(
        default_factory=MetricsService,
        description="Prometheus metrics: the GPUs (NVML) and every job's training "
        "(docs/monitoring.md).",
    )
    serve: ServeService = Field(
        default_factory=ServeService,
        description="torchrig serve, run as a job in the workbench (docs/serve.md).",
    )


class Resources(StrictTable):
    gpus: str | int | list[str] = Field(
        default="all",
        description='GPUs given to the workbench: "all", "none", a count (2), or device '
        'indexes or UUIDs (["0", "2"]).',
    )
    shm: str = Field(
        default="auto",
        description='Size of /dev/shm for DataLoader workers and NCCL: "auto" (a quarter of '
        f'RAM, between 1g and 64g) or a size like "16g" ({MIN_SHM_TEXT} to {MAX_SIZE_TEXT}).',
    )
    memory: str = Field(
        default="",
        description=f'Memory limit like "64g" ({MIN_MEMORY_TEXT} to {MAX_SIZE_TEXT}); "" for none.',
    )
    cpus: float = Field(
        default=0.0,
        ge=0,
        le=MAX_CPUS,
        allow_inf_nan=False,
        description=f"CPU limit (e.g. 8 or 7.5, at most {MAX_CPUS}); 0 for none.",
    )
    pids: int = Field(
        default=8192,
        ge=64,
        le=MAX_PIDS,
        description=f"Process limit (CIS 5.29), 64 to {MAX_PIDS} (Linux's largest pid_max).",
    )
    stop_timeout: int = Field(
        default=120,
        ge=10,
        le=3600,
        description="Seconds a stop waits for the final checkpoint before killing.",
    )

    @field_validator("shm")
    @classmethod
    def _shm(cls, value: str) -> str:
        return _check_size(value, allow=("auto",), least=(MIN_SHM, MIN_SHM_TEXT))

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return _check_size(value, allow=("",), least=(MIN_MEMORY, MIN_MEMORY_TEXT))

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: str | int | list[str]) -> str | int | list[str]:
        if isinstance(value, str) and value not in ("all", "none"):
            raise Invalid(
                f"{quoted(value)} is not a GPU selection",
                f"write a count without quotes (gpus = {value}) or a list of indexes "
                f'(gpus = ["{value}"])'
                if value.isdecimal() and value.isascii()
                else 'write "all", "none", a count like 2, or ["0"]',
            )
        if isinstance(value, int) and not 1 <= value <= 64:
            raise Invalid(f"{value} GPUs is out of range", 'write 1 to 64, or "none" for no GPU')
        if isinstance(value, list):
            if not value:
                raise Invalid("an empty list selects no GPU", 'write "none" if you mean that')
            for index, item in enumerate(value):
                if not (item.isdigit() or item.startswith(("GPU-", "MIG-"))):
                    raise Invalid(
                        f"{quoted(item)} is not a GPU index or UUID",
                        'write an index like "0" or a UUID like "GPU-8a1f…" (see `nvidia-smi -L`)',
                        at=(index,),
                    )
            for index, item in enumerate(value):
                if item in value[:index]:
                    raise Invalid(
                        f"GPU {quoted(item)} is listed twice", "list it once", at=(index,)
                    )
        return value


def _check_url(value: str) -> str:
    if not re.fullmatch(r"(https?|file)://\S+", value):
        raise Invalid(f"{quoted(value)} is not a URL", 'write e.g. "https://pypi.org/simple"')
    return value.rstrip("/")


class Sources(StrictTable):
    preset: str = Field(
        default="none",
        description="Mirrors for networks where pypi.org, download.pytorch.org, huggingface.co "
        'or the distribution\'s mirrors are blocked: "none", "china" (Tsinghua TUNA\'s PyPI, '
        'Debian and Ubuntu mirrors and hf-mirror.com) or "china-aliyun" (Alibaba Cloud\'s and '
        "hf-mirror.com). It sets index, torch_index, hf_endpoint and apt_mirror where this "
        "table leaves them out; `torchrig plan` shows each value and where it came from.",
    )
    index: str = Field(
        default="https://pypi.org/simple",
        description="Python package index (a PyPI mirror behind a firewall).",
    )
    extra_indexes: list[str] = Field(
        default_factory=list, description="More indexes, searched before the main one."
    )
    find_links: list[str] = Field(
        default_factory=list,
        description="Local wheelhouses (folders) or pages of links; with no index reachable, "
        "these make fully offline locks and builds possible.",
    )
    torch_index: str = Field(
        default="auto",
        description='Where torch comes from: "auto" (PyPI for its default CUDA build, else '
        'https://download.pytorch.org/whl/<variant>), a mirror URL, or "none" (only the index '
        "and find_links).",
    )
    apt_mirror: str = Field(
        default="auto",
        description='Distribution mirror for the base and system packages; "auto" is the '
        "distribution's own.",
    )
    registry: str = Field(
        default="auto",
        json_schema_extra={"pattern": REGISTRY_RE.pattern},
        description="Where the base distribution's image is pulled from (then pinned by "
        'digest): "auto" (its own registry, Docker Hub, through the engine\'s mirrors), a '
        'mirror of Docker Hub as host[:port][/path] (e.g. "mirror.example:5000"), or "none" '
        "(never pull: bootstrap the base, or use the shared cache `sudo torchrig prepare` "
        "fills).",
    )
    ca_certificates: list[str] = Field(
        default_factory=list,
        description="Extra CA certificates (PEM files) that builds trust, for TLS-inspecting "
        "proxies; the host's /usr/local/share/ca-certificates is added too.",
    )
    trusted_hosts: list[str] = Field(
        default_factory=list,
        description="Index hosts (host or host:port) whose TLS certificate is not checked when "
        "locking, as pip's trusted-host and uv's --allow-insecure-host; every file is still "
        "checked against the lock's sha256. Prefer ca_certificates.",
    )
    hf_endpoint: str = Field(
        default="",
        description="The Hugging Face Hub the workbench downloads from (HF_ENDPOINT), e.g. "
        '"https://hf-mirror.com"; "" for huggingface.co.',
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        """A preset fills the keys the table leaves out; a key written out always wins."""
        if not isinstance(data, dict) or data.get("preset", "none") == "none":
            return data
        found = find_preset(data["preset"]) if isinstance(data["preset"], str) else None
        if found is None:
            return data  # the field validator names the choices
        return {**found.spec_values(), **data}

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        if value != "none" and find_preset(value) is None:
            choices = ", ".join(f'"{n}"' for n in ["none", *preset_names()])
            raise Invalid(f"{quoted(value)} is not a mirror preset", f"use one of {choices}")
        return value

    @field_validator("hf_endpoint")
    @classmethod
    def _hf_endpoint(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s/,\"']+(/[^\s,\"']*)?", value):
            raise Invalid(
                f"{quoted(value)} is not an http(s) URL",
                'write e.g. "https://hf-mirror.com", or "" for huggingface.co',
            )
        return value.rstrip("/")

    @field_validator("trusted_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            must_match(
                item,
                HOST_RE.fullmatch,
                "is not a host name",
                'write the host alone, e.g. "mirrors.example.com" or "10.0.0.5:8080" (no '
                "scheme, no path)",
                at=(index,),
            )
        return value

    @field_validator("index", "apt_mirror", "torch_index")
    @classmethod
    def _url(cls, value: str) -> str:
        if value in ("auto", "none"):
            return value
        return _check_url(value)

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str) -> str:
        return must_match(
            value,
            REGISTRY_RE.fullmatch,
            "is not a registry",
            'write "auto", "none" or a mirror as host[:port][/path], e.g. '
            '"mirror.example:5000" (no scheme, no tag)',
        )

    @field_validator("extra_indexes")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        checked = []
        for index, item in enumerate(value):
            try:
                checked.append(_check_url(item))
            except Invalid as exc:
                raise Invalid(exc.message, exc.fix, at=(index,)) from None
        return checked


class Cache(StrictTable):
    huggingface: Literal["user", "host", "none"] = Field(
        default="user",
        description="A Hugging Face cache volume mounted at /cache/huggingface (HF_HUB_CACHE, "
        "HF_XET_CACHE and HF_DATASETS_CACHE point into it), so a model is downloaded once: "
        '"user" shares it between the workbenches of one workbench UID (volume '
        'torchrig-hf-cache-<uid>), "host" between every workbench on this host whatever its '
        "UID (volume torchrig-hf-cache, writable by all of them: only where everyone on the "
        "host trusts each other, as a cached model or its code runs where it is loaded), "
        '"none" for no volume (downloads go to ~/.cache/huggingface in the state volume).',
    )


def _check_container_path(value: str) -> str:
    if MOUNT_PATH_BAD.search(value):
        raise Invalid(
            f"{quoted(value)} holds a comma, quote or control character",
            "the engines split mount options on commas: rename the folder or pick another path",
        )
    if not value.startswith("/"):
        raise Invalid(
            f"{quoted(value)} is not an absolute container path", 'write e.g. target = "/data"'
        )
    normal = posixpath.normpath(value)
    if normal.startswith("//"):
        normal = normal[1:]
    if normal != value:
        raise Invalid(f"{quoted(value)} is not a plain path", f'write it as target = "{normal}"')
    if value == "/":
        raise Invalid(
            '"/" would hide the whole workbench', 'mount it at a folder like "/data" or "/mnt/x"'
        )
    for reserved in RESERVED_TARGETS:
        if value == reserved or value.startswith(reserved + "/"):
            inside = "is" if value == reserved else f"is inside {reserved}, which is"
            raise Invalid(
                f"{quoted(value)} {inside} the workbench's own",
                'mount it at a folder of its own like "/data" or "/mnt/datasets"',
            )
    return value


class BindMount(StrictTable):
    source: str = Field(
        description="The host folder or file: an absolute path or ~/…. Checked when the "
        "workbench starts (and by `torchrig plan` on this machine): it must exist, symlinks are "
        "resolved, and / , system folders (/etc, /proc, /sys, /dev, /boot, /run, "
        "/var/lib/docker …) and the container engine's socket are refused.",
    )
    target: str = Field(
        description='Where it appears in the workbench, an absolute path like "/data"; not '
        "/workspace, /home, /etc, /usr, /opt/venv, /proc, /sys, /dev, /run or inside them.",
    )
    read_only: bool = Field(
        default=True,
        description="Mount it read-only (the default); false lets the workbench write to it.",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if MOUNT_PATH_BAD.search(value):
            raise Invalid(
                f"{quoted(value)} holds a comma, quote or control character",
                "the engines split mount options on commas: rename the folder or link it from "
                "a plain path",
            )
        if not (value.startswith("/") or value == "~" or value.startswith("~/")):
            raise Invalid(
                f"{quoted(value)} is not an absolute path",
                'write source = "/data/imagenet" or "~/datasets" (relative paths would depend '
                "on where torchrig runs)",
            )
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return _check_container_path(value)


class Spec(StrictTable):
    """torchrig.toml: what one workbench is made of."""

    project: Project = Field(description="What this workbench is called.")
    torch: Torch = Field(default_factory=Torch, description="The PyTorch build.")
    python: Python = Field(default_factory=Python, description="Python and its packages.")
    base: Base = Field(default_factory=Base, description="The base image and system packages.")
    user: User = Field(default_factory=User, description="The user inside the workbench.")
    services: Services = Field(default_factory=Services, description="Services the workbench runs.")
    resources: Resources = Field(
        default_factory=Resources, description="GPUs, shared memory and limits."
    )
    sources: Sources = Field(
        default_factory=Sources, description="Where packages come from (mirrors, offline)."
    )
    cache: Cache = Field(default_factory=Cache, description="Caches shared between workbenches.")
    mounts: list[BindMount] = Field(
        default_factory=list,
        description="Host folders or files given to the workbench beside /workspace, each a "
        '[[mounts]] table: source = "/data/imagenet", target = "/data", read_only = true.',
    )
    lab: Lab | None = Field(
        default=None,
        description="One GPU server for many people through JupyterHub (`torchrig lab`); "
        "see docs/lab.md.",
    )
    cluster: Cluster | None = Field(
        default=None,
        description="Run the image on many nodes through Slurm or Kubernetes "
        "(`torchrig export slurm`, `torchrig run --on slurm`); see docs/cluster.md.",
    )

    @model_validator(mode="after")
    def _mounts_apart(self) -> Spec:
        for index, mount in enumerate(self.mounts):
            for other_index, other in enumerate(self.mounts[:index]):
                if mount.target == other.target:
                    raise Invalid(
                        f"{quoted(mount.target)} is also the target of mounts[{other_index}]",
                        "give each mount its own target",
                        at=("mounts", index, "target"),
                    )
                outer, inner = sorted((mount.target, other.target), key=len)
                if inner.startswith(outer + "/"):
                    raise Invalid(
                        f"{quoted(mount.target)} and mounts[{other_index}].target "
                        f"{quoted(other.target)} are one inside the other",
                        "mount them side by side (e.g. /data/a and /data/b, or /data and /models)",
                        at=("mounts", index, "target"),
                    )
        return self

    @model_validator(mode="after")
    def _ports_distinct(self) -> Spec:
        used: dict[int, str] = {}
        for name in ("jupyter", "ssh", "tensorboard", "metrics", "serve"):
            service: Service = getattr(self.services, name)
            if service.enabled and service.port:
                if service.port in used:
                    other = used[service.port]
                    # Point at the port the file sets, not at one left at its default.
                    written = "port" in getattr(self.services, other).model_fields_set
                    here, there = (
                        (other, name)
                        if written and "port" not in service.model_fields_set
                        else (name, other)
                    )
                    raise Invalid(
                        f"{service.port} is also the port of services.{there}",
                        "give each service its own port (or 0 for a free one)",
                        at=("services", here, "port"),
                    )
                used[service.port] = name
        return self


def tables(
    model: type[BaseModel] = Spec, prefix: tuple[str, ...] = (), description: str = ""
) -> list[tuple[tuple[str, ...], type[BaseModel], str]]:
    """Every table of the spec in file order: (key path, model, description).

    `torchrig init`, the reference in docs/ and the error hints all walk the model this way,
    so a new field shows up everywhere at once.
    """
    found: list[tuple[tuple[str, ...], type[BaseModel], str]] = [(prefix, model, description)]
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += tables(annotation, (*prefix, name), field.description or "")
    return found
