"""The compatibility knowledge as typed records, loaded from the TOML files in `data/`.

Every record names its sources (keys of `data/sources.toml`), so a person can check a fact
without trusting us. The files are validated strictly: a typo in a data file fails loudly in
the unit tests rather than silently changing a resolution.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Literal

from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field

Arch = Literal["x86_64", "aarch64"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Record):
    key: str = Field(description="Short key used by facts, e.g. 'S22' or 'M'.")
    title: str = Field(description="What the source is.")
    url: str = Field(default="", description="Where to read it, when it has an address.")


class Patch(_Record):
    """One patch release of a release line, with the companions built against it."""

    version: str
    date: str = Field(description="Release date (ISO), from PyPI upload times.")
    torchvision: str = Field(default="", description="Matching torchvision; '' when none.")
    torchaudio: str = Field(default="", description="Matching torchaudio; '' when none.")
    torchaudio_pin: bool = Field(
        default=True,
        description="Whether this torchaudio pins torch exactly (false: installable beside it).",
    )
    triton: str = Field(default="", description="Triton version torch pins on Linux x86_64.")
    sources: list[str]


class Variant(_Record):
    """One build variant of a release line: cpu, cu126, cu130 …"""

    name: str = Field(description="Variant tag as used in index URLs: cpu, cu118 … cu132.")
    cuda: str = Field(default="", description="CUDA toolkit version of the build, '' for cpu.")
    cudnn: str = ""
    nccl: str = ""
    status: Literal["stable", "experimental"] = "stable"
    platforms: list[Arch] = Field(default_factory=lambda: list[Arch](["x86_64"]))
    arch_x86_64: list[str] = Field(
        default_factory=list,
        description="torch.cuda.get_arch_list() of the x86_64 wheel (sm_XY / compute_XY).",
    )
    arch_aarch64: list[str] = Field(default_factory=list)
    arch_uncertain: bool = Field(
        default=False, description="True where the sources leave the arch list unverified [U]."
    )
    sources: list[str]

    def arch_list(self, arch: str) -> list[str]:
        return self.arch_x86_64 if arch == "x86_64" else self.arch_aarch64

    @property
    def cuda_major(self) -> int | None:
        return int(self.cuda.split(".")[0]) if self.cuda else None


class Release(_Record):
    """A PyTorch release line (2.4 … 2.15)."""

    line: str
    python: list[str] = Field(description="CPython versions with wheels on PyPI (no 't').")
    requires_python: str
    pypi_x86_64: str = Field(description="Variant of the default PyPI wheel on Linux x86_64.")
    pypi_aarch64: str = Field(description="Variant of the default PyPI wheel on Linux aarch64.")
    patches: list[Patch]
    variants: list[Variant]
    sources: list[str]

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def pypi_variant(self, arch: str) -> str:
        return self.pypi_x86_64 if arch == "x86_64" else self.pypi_aarch64


class CudaToolkit(_Record):
    """A CUDA toolkit release and the Linux driver it ships with (release notes, Table 3)."""

    version: str = Field(description="Toolkit version, e.g. '12.8' (GA) or '12.8.1' (Update 1).")
    label: str = Field(description="As printed in the notes, e.g. '12.8 Update 1'.")
    min_driver: str = Field(description="Minimum Linux x86_64 driver for the full feature set.")
    sources: list[str]


class MinorCompat(_Record):
    """CUDA minor-version compatibility: any toolkit of `major` runs on drivers >= min_driver."""

    major: int
    min_driver: str
    sources: list[str]


class Gpu(_Record):
    """A GPU model: how to recognise it, its compute capability and datasheet peaks (dense)."""

    name: str
    match: list[str] = Field(description="Case-insensitive substrings of the NVML product name.")
    cc: str = Field(description="Compute capability, e.g. '9.0'.")
    bf16_tflops: float | None = None
    fp16_tflops: float | None = None
    tf32_tflops: float | None = None
    fp32_tflops: float | None = None
    memory_gb: float | None = None
    bandwidth_gbs: float | None = None
    nvlink_gbs: float | None = None
    uncertain: bool = Field(default=False, description="Some figures are unverified [U].")
    sources: list[str]


class Distribution(_Record):
    """A base distribution torchrig can bootstrap or pull: its Python and glibc."""

    name: Literal["debian", "ubuntu"]
    release: str
    version: str
    python: str = Field(description="The distribution's python3 (major.minor).")
    glibc: str
    mirror: str = Field(description="Default package mirror (x86_64).")
    mirror_aarch64: str = Field(default="", description="Mirror for aarch64, '' if the same.")
    components: list[str]
    image: str = Field(description="Registry image reference (without digest).")
    tools: list[str] = Field(
        default_factory=list,
        description='Terminal programs the "workbench" stack installs from this release.',
    )
    sources: list[str]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.release}"


class Compat(_Record):
    """All compatibility knowledge, as one value the resolver can take."""

    releases: list[Release]
    toolkits: list[CudaToolkit]
    minor_compat: list[MinorCompat]
    gpus: list[Gpu]
    distributions: list[Distribution]
    sources: list[Source]

    def release(self, line: str) -> Release | None:
        return next((r for r in self.releases if r.line == line), None)

    def distribution(self, ref: str) -> Distribution | None:
        return next((d for d in self.distributions if d.ref == ref), None)

    def gpu_for(self, product_name: str) -> Gpu | None:
        """The GPU record whose longest match string occurs in an NVML product name."""
        low = product_name.lower()
        best: tuple[int, Gpu] | None = None
        for gpu in self.gpus:
            for m in gpu.match:
                if m.lower() in low and (best is None or len(m) > best[0]):
                    best = (len(m), gpu)
        return best[1] if best else None

    def toolkit_driver(self, cuda: str) -> CudaToolkit | None:
        """The toolkit row for a CUDA version: the newest row not newer than it."""
        want = Version(cuda)
        rows = [t for t in self.toolkits if Version(t.version) <= want]
        same_minor = [t for t in rows if Version(t.version).release[:2] == want.release[:2]]
        pool = same_minor or rows
        return max(pool, key=lambda t: Version(t.version)) if pool else None

    def minor_compat_for(self, major: int) -> MinorCompat | None:
        return next((m for m in self.minor_compat if m.major == major), None)


def _read(name: str) -> dict[str, object]:
    text = resources.files("torchrig.compat").joinpath("data", name).read_text("utf-8")
    return tomllib.loads(text)


@cache
def load_compat() -> Compat:
    """Load and validate the bundled data files (cached: they never change in a process)."""
    releases = _read("releases.toml")
    cuda = _read("cuda.toml")
    return Compat.model_validate(
        {
            "releases": releases["release"],
            "toolkits": cuda["toolkit"],
            "minor_compat": cuda["minor_compat"],
            "gpus": _read("gpus.toml")["gpu"],
            "distributions": _read("distributions.toml")["distribution"],
            "sources": _read("sources.toml")["source"],
        }
    )
