"""The spec, `torchrig.toml`: a strict model of what a person asks for.

Unknown keys are rejected (a typo must never be silently ignored) and every field carries a
description: the same text feeds `torchrig schema`, the generated reference in docs/ and the
comments `torchrig init` writes. Validation here is about the file alone (types, ranges,
syntax); whether a request can be met on a host is the resolver's job.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SIZE_RE = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?[kmgt]?$", re.IGNORECASE)
VARIANT_RE = re.compile(r"^(auto|cpu|cu1[0-9]{2})$")
DISTRO_RE = re.compile(r"^(auto|(debian|ubuntu):[a-z]+)$")
APT_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")


class _Section(BaseModel):
    # strict: a port written as "8888" or a flag written as "yes" is a mistake worth naming.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def parse_size(text: str) -> int:
    """'16g' → bytes. Binary units, as Docker reads them."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    unit = text[-1].lower() if text[-1].isalpha() else ""
    number = text[:-1] if unit else text
    return int(float(number) * units[unit])


def _check_size(value: str, *, allow: tuple[str, ...]) -> str:
    if value in allow or SIZE_RE.match(value):
        return value
    allowed = " or ".join(f'"{a}"' for a in allow if a) or ""
    raise ValueError(
        f'"{value}" is not a size; write a number with a unit like "16g" or "512m"'
        + (f", or {allowed}" if allowed else "")
    )


class Project(_Section):
    name: str = Field(
        description="Names the image, the container and its volumes: lower case letters, "
        "digits, '.', '_' and '-'.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f'"{value}" is not a valid name; use lower case letters, digits, ".", "_" or "-", '
                "starting with a letter or digit (at most 63 characters)"
            )
        return value


class Torch(_Section):
    version: str = Field(
        default="latest",
        description='PyTorch to install: "latest", an exact version ("2.13.0"), a release '
        'line ("2.13" = newest 2.13.x) or a range (">=2.8,<2.12").',
    )
    variant: str = Field(
        default="auto",
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
        try:
            if value[:1].isdigit():
                Version(value)
            else:
                SpecifierSet(value)
        except (InvalidVersion, InvalidSpecifier):
            raise ValueError(
                f'"{value}" is not a version, a release line or a range; write "latest", '
                '"2.13.0", "2.13" or ">=2.8,<2.12"'
            ) from None
        return value

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str) -> str:
        if not VARIANT_RE.match(value):
            raise ValueError(
                f'"{value}" is not a build variant; use "auto", "cpu" or a CUDA variant like '
                '"cu128" or "cu130"'
            )
        return value

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


class Python(_Section):
    version: str = Field(
        default="auto",
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
        if value != "auto" and not re.match(r"^3\.[0-9]{1,2}$", value):
            raise ValueError(f'"{value}" is not a Python version; write "3.12" or "auto"')
        return value

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                Requirement(item)
            except InvalidRequirement as exc:
                raise ValueError(
                    f'"{item}" is not a valid requirement ({exc}); write e.g. "peft>=0.13"'
                ) from None
        return value


class Base(_Section):
    distribution: str = Field(
        default="auto",
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

    @field_validator("distribution")
    @classmethod
    def _distribution(cls, value: str) -> str:
        if not DISTRO_RE.match(value):
            raise ValueError(
                f'"{value}" is not a distribution; write "ubuntu:noble", "debian:bookworm" '
                'or "auto"'
            )
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if value and "@sha256:" not in value:
            raise ValueError(
                f'"{value}" is not pinned by digest; append "@sha256:<digest>" (see '
                "`docker buildx imagetools inspect IMAGE`) so every build gets the same base"
            )
        return value

    @field_validator("packages")
    @classmethod
    def _packages(cls, value: list[str]) -> list[str]:
        for item in value:
            if not APT_PACKAGE_RE.match(item):
                raise ValueError(
                    f'"{item}" is not an apt package name; write e.g. "ffmpeg" or "git=1:2.39*"'
                )
        return value

    @model_validator(mode="after")
    def _one_base(self) -> Base:
        if self.image and self.distribution != "auto":
            raise ValueError('set either "distribution" or "image", not both')
        return self


class User(_Section):
    name: str = Field(
        default="auto",
        description='Workbench user inside the container; "auto" takes the host user\'s name '
        '("rig" when that is root).',
    )
    uid: int | Literal["auto"] = Field(
        default="auto",
        description='UID inside the container, so workspace files belong to you on the host; '
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
            raise ValueError('the workbench never runs as "root"; pick another name or "auto"')
        if value != "auto" and not USER_RE.match(value):
            raise ValueError(f'"{value}" is not a valid user name; use e.g. "alice"')
        return value

    @field_validator("uid", "gid")
    @classmethod
    def _id(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 2147483646:
            raise ValueError(
                f"{value} is out of range; use 1 to 2147483646 (0 is root), or \"auto\""
            )
        return value


Port = Annotated[int, Field(ge=0, le=65535)]


class Service(_Section):
    enabled: bool = Field(default=True, description="Run this service in the workbench.")
    port: Port = Field(
        description="Host port on 127.0.0.1; 0 picks a free one. If taken, the next free "
        "port is used and reported."
    )


class Services(_Section):
    jupyter: Service = Field(
        default_factory=lambda: Service(port=8888),
        description="JupyterLab, behind a generated token, on 127.0.0.1 only.",
    )
    ssh: Service = Field(
        default_factory=lambda: Service(port=2222),
        description="OpenSSH: key-only, no root login, only the workbench user.",
    )
    tensorboard: Service = Field(
        default_factory=lambda: Service(enabled=False, port=6006),
        description="TensorBoard on the workspace's runs/ folder.",
    )


class Resources(_Section):
    gpus: str | int | list[str] = Field(
        default="all",
        description='GPUs given to the workbench: "all", "none", a count (2), or device '
        'indexes or UUIDs (["0", "2"]).',
    )
    shm: str = Field(
        default="auto",
        description='Size of /dev/shm for DataLoader workers and NCCL: "auto" (a quarter of '
        'RAM, between 1g and 64g) or a size like "16g".',
    )
    memory: str = Field(default="", description='Memory limit like "64g"; "" for none.')
    cpus: float = Field(default=0, ge=0, description="CPU limit (e.g. 8 or 7.5); 0 for none.")
    pids: int = Field(default=8192, ge=64, description="Process limit (CIS 5.29).")
    stop_timeout: int = Field(
        default=120,
        ge=10,
        le=3600,
        description="Seconds a stop waits for the final checkpoint before killing.",
    )

    @field_validator("shm")
    @classmethod
    def _shm(cls, value: str) -> str:
        return _check_size(value, allow=("auto",))

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return _check_size(value, allow=("",))

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: str | int | list[str]) -> str | int | list[str]:
        if isinstance(value, str) and value not in ("all", "none"):
            raise ValueError(f'"{value}" is not a GPU selection; write "all", "none", 2 or ["0"]')
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError(f'{value} GPUs is out of range; write 1 to 64, or "none"')
        if isinstance(value, list):
            if not value:
                raise ValueError('an empty list selects no GPU; write "none" if you mean that')
            for item in value:
                if not (item.isdigit() or item.startswith(("GPU-", "MIG-"))):
                    raise ValueError(
                        f'"{item}" is not a GPU index or UUID; write e.g. "0" or "GPU-8a1f…"'
                    )
            if len(set(value)) != len(value):
                raise ValueError("a GPU is listed twice")
        return value


class Sources(_Section):
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
    ca_certificates: list[str] = Field(
        default_factory=list,
        description="Extra CA certificates (PEM files) that builds trust, for TLS-inspecting "
        "proxies; the host's /usr/local/share/ca-certificates is added too.",
    )

    @field_validator("index", "apt_mirror", "torch_index")
    @classmethod
    def _url(cls, value: str) -> str:
        if value in ("auto", "none"):
            return value
        if not re.match(r"^(https?|file)://\S+$", value):
            raise ValueError(f'"{value}" is not a URL; write e.g. "https://pypi.org/simple"')
        return value.rstrip("/")

    @field_validator("extra_indexes")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        return [cls._url(v) for v in value]


class Spec(_Section):
    """torchrig.toml: what one workbench is made of."""

    project: Project = Field(description="What this workbench is called.")
    torch: Torch = Field(default_factory=Torch, description="The PyTorch build.")
    python: Python = Field(default_factory=Python, description="Python and its packages.")
    base: Base = Field(default_factory=Base, description="The base image and system packages.")
    user: User = Field(default_factory=User, description="The user inside the workbench.")
    services: Services = Field(
        default_factory=Services, description="Services the workbench runs."
    )
    resources: Resources = Field(
        default_factory=Resources, description="GPUs, shared memory and limits."
    )
    sources: Sources = Field(
        default_factory=Sources, description="Where packages come from (mirrors, offline)."
    )

    @model_validator(mode="after")
    def _ports_distinct(self) -> Spec:
        used: dict[int, str] = {}
        for name in ("jupyter", "ssh", "tensorboard"):
            service: Service = getattr(self.services, name)
            if service.enabled and service.port:
                if service.port in used:
                    raise ValueError(
                        f"services.{name}.port {service.port} is also services."
                        f"{used[service.port]}.port; give each service its own port"
                    )
                used[service.port] = name
        return self
