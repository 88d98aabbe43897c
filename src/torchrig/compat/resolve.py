"""Choose the PyTorch build, Python and base for a spec on a host, and explain every choice.

The resolver is pure: spec + host facts + compatibility data in, a Resolution out (or a
ResolutionError saying what was tried and what to change). It walks torch versions newest
first and, for each, the build variants in order of preference, rejecting each candidate with
a one-line reason. The first version with a passing variant wins, so "latest" means "the
newest build this machine can actually run".
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import BaseModel, ConfigDict, Field

from torchrig.compat.mirrors import find_preset
from torchrig.compat.model import Compat, Distribution, Release, Variant
from torchrig.errors import ResolutionError
from torchrig.host.facts import Gpu, HostFacts
from torchrig.spec.model import Spec

PYPI = "https://pypi.org/simple"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# When both python and base are "auto": the newest Ubuntu LTS is what GPU servers run.
DEFAULT_DISTRIBUTION = "ubuntu:noble"
DISTRIBUTION_PREFERENCE = ("ubuntu:noble", "debian:trixie", "debian:bookworm", "ubuntu:jammy")
# uv's --python-platform knows manylinux_2_17 and 2_28 … 2_40.
MANYLINUX_MIN, MANYLINUX_MAX = 28, 40


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Rejection(_Out):
    torch: str
    variant: str
    reason: str


class GpuFit(_Out):
    index: int
    name: str
    cc: str | None
    kernels: str = Field(description="The arch entry that serves this GPU, e.g. 'sm_90'.")


class BaseChoice(_Out):
    distribution: str = Field(description="'ubuntu:noble' …, or 'image' for a registry base.")
    image: str = Field(description="Registry reference of the base.")
    python: str
    glibc: str
    mirror: str


class NoBuildFits(ResolutionError):
    """No candidate passed: carries every rejection so `plan --json` can list them."""

    def __init__(self, message: str, fix: str | None, rejected: list[Rejection]) -> None:
        super().__init__(message, fix)
        self.rejected = rejected


class Resolution(_Out):
    torch: str
    variant: str
    cuda: str
    cudnn: str
    nccl: str
    triton: str
    torchvision: str
    torchaudio: str
    requirements: list[str] = Field(description="Pinned torch-family requirements.")
    index: str = Field(description="Index torch comes from; '' for find-links/main index only.")
    python: str
    arch: str
    platform: str = Field(description="uv --python-platform value, e.g. x86_64-manylinux_2_39.")
    base: BaseChoice
    arch_list: list[str]
    gpus: list[GpuFit]
    reasons: list[str]
    warnings: list[str]
    rejected: list[Rejection]

    @property
    def torch_requirement(self) -> str:
        return self.requirements[0]


@dataclass
class _Verdict:
    ok: bool
    reason: str = ""
    degraded: str = ""  # passes, but only with a caveat worth avoiding when there is a choice


@dataclass
class _Request:
    """What every check of one resolution shares; reasons and warnings accumulate here."""

    spec: Spec
    host: HostFacts
    compat: Compat
    arch: str
    base: BaseChoice
    gpu_ccs: list[tuple[Gpu, str | None]]
    reasons: list[str]
    warnings: list[str]


def resolve(spec: Spec, host: HostFacts, compat: Compat) -> Resolution:
    reasons: list[str] = []
    warnings: list[str] = []
    arch = _target_arch(host)
    base = choose_base(spec, arch, compat, reasons)
    gpus = _selected_gpus(spec, host)
    gpu_ccs = [(g, _cc_of(g, compat, warnings)) for g in gpus]
    req = _Request(spec, host, compat, arch, base, gpu_ccs, reasons, warnings)

    versions = _candidate_versions(spec, compat)
    preference = _variant_preference(spec, host, gpus, reasons)
    rejected: list[Rejection] = []
    for release, version in versions:
        passing: list[tuple[Variant, _Verdict]] = []
        for name in preference(release, arch):
            found = release.variant(name)
            if found is None:
                # The data is a selection: a build it lacks may still exist upstream.
                builds = ", ".join(v.name for v in release.variants)
                reason = f"torch {version} {name}: not in torchrig's data (it lists {builds})"
                rejected.append(Rejection(torch=version, variant=name, reason=reason))
                continue
            verdict = _check(req, release, version, found)
            if verdict.ok:
                passing.append((found, verdict))
            else:
                rejected.append(Rejection(torch=version, variant=name, reason=verdict.reason))
        if not passing:
            continue
        clean = [p for p in passing if not p[1].degraded]
        variant, verdict = (clean or passing)[0]
        for other, other_verdict in passing:
            if other is not variant:
                why = other_verdict.degraded or (
                    f"torch {version} {other.name}: {variant.name} is preferred"
                )
                rejected.append(Rejection(torch=version, variant=other.name, reason=why))
        if verdict.degraded:
            warnings.append(verdict.degraded)
        return _resolution(req, release, version, variant, rejected)
    raise _impossible(req, rejected)


# --- inputs ---------------------------------------------------------------------------------


def _target_arch(host: HostFacts) -> str:
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(host.system.arch, host.system.arch)
    if arch not in ("x86_64", "aarch64"):
        raise ResolutionError(
            f"no PyTorch Linux builds for the {arch} architecture",
            "use an x86_64 or aarch64 machine, or plan for one with --host FILE",
        )
    return arch


def choose_base(spec: Spec, arch: str, compat: Compat, reasons: list[str]) -> BaseChoice:
    """The base image and its Python: host-independent, so a lock check can redo it anywhere."""
    want_python = spec.python.version
    if spec.base.image:
        if want_python == "auto":
            raise ResolutionError(
                "with base.image torchrig cannot tell which python3 the image has",
                'set python.version (e.g. "3.12") to the image\'s python3',
            )
        reasons.append(f"base: the image {spec.base.image} with its python{want_python}")
        return BaseChoice(
            distribution="image",
            image=spec.base.image,
            python=want_python,
            glibc="2.28",
            mirror=_mirror(spec, None, arch),
        )
    if spec.base.distribution != "auto":
        dist = compat.distribution(spec.base.distribution)
        if dist is None:
            known = ", ".join(d.ref for d in compat.distributions)
            raise ResolutionError(
                f"base.distribution {spec.base.distribution} is not one torchrig knows",
                f"use one of {known}, or base.image",
            )
        if want_python not in ("auto", dist.python):
            raise ResolutionError(
                f"{dist.ref} has Python {dist.python}, but python.version is {want_python}",
                f'set python.version = "{dist.python}" or pick a base with Python {want_python}'
                f" ({_with_python(compat, want_python)})",
            )
        reasons.append(f"base: {dist.ref} as asked, with its python{dist.python}")
    elif want_python == "auto":
        dist = compat.distribution(DEFAULT_DISTRIBUTION)
        assert dist is not None
        reasons.append(f"base: {dist.ref} (newest Ubuntu LTS), with its python{dist.python}")
    else:
        matches = [
            d
            for ref in DISTRIBUTION_PREFERENCE
            if (d := compat.distribution(ref)) is not None and d.python == want_python
        ]
        if not matches:
            have = ", ".join(f"{d.ref} → {d.python}" for d in compat.distributions)
            raise ResolutionError(
                f"no base distribution torchrig knows has Python {want_python}",
                f"pick one of {have} (python.version), or use base.image",
            )
        dist = matches[0]
        reasons.append(f"base: {dist.ref}, whose python3 is the asked-for {want_python}")
    return BaseChoice(
        distribution=dist.ref,
        image=dist.image,
        python=dist.python,
        glibc=dist.glibc,
        mirror=_mirror(spec, dist, arch),
    )


def _with_python(compat: Compat, python: str) -> str:
    refs = [d.ref for d in compat.distributions if d.python == python]
    return ", ".join(refs) if refs else "none known; use base.image"


def _mirror(spec: Spec, dist: Distribution | None, arch: str) -> str:
    if spec.sources.apt_mirror != "auto":
        return spec.sources.apt_mirror
    if dist is None:
        return ""
    preset = find_preset(spec.sources.preset)
    if preset is not None and (mirror := preset.apt_mirror(dist.name, arch)):
        return mirror
    return dist.mirror_aarch64 if arch == "aarch64" and dist.mirror_aarch64 else dist.mirror


def _selected_gpus(spec: Spec, host: HostFacts) -> list[Gpu]:
    sel = spec.resources.gpus
    if sel == "none":
        return []
    if sel == "all":
        return list(host.gpus)
    if isinstance(sel, int):
        if host.gpus and sel > len(host.gpus):
            raise ResolutionError(
                f"resources.gpus asks for {sel} GPUs, this host has {len(host.gpus)}",
                f'lower resources.gpus to {len(host.gpus)} or write "all"',
            )
        return list(host.gpus[:sel])
    assert isinstance(sel, list)
    chosen = []
    for item in sel:
        match = [g for g in host.gpus if str(g.index) == item or g.uuid == item]
        if host.gpus and not match:
            have = ", ".join(f"{g.index} ({g.uuid})" for g in host.gpus)
            raise ResolutionError(
                f"resources.gpus names GPU {item}, which this host does not have",
                f"pick from {have}",
            )
        chosen.extend(match)
    return chosen


def _cc_of(gpu: Gpu, compat: Compat, warnings: list[str]) -> str | None:
    if gpu.cc:
        return gpu.cc
    known = compat.gpu_for(gpu.name)
    if known:
        return known.cc
    warnings.append(
        f"GPU {gpu.index} ({gpu.name}): compute capability unknown (no NVML and not in the "
        "GPU table); its kernels could not be checked"
    )
    return None


def _candidate_versions(spec: Spec, compat: Compat) -> list[tuple[Release, str]]:
    wanted: SpecifierSet | None = spec.torch.specifier()
    every = [(r, p.version) for r in compat.releases for p in r.patches]
    every.sort(key=lambda rv: Version(rv[1]), reverse=True)
    chosen = [rv for rv in every if wanted is None or wanted.contains(rv[1], prereleases=False)]
    if not chosen:
        span = f"{every[-1][1]} … {every[0][1]}"
        raise ResolutionError(
            f'torch.version "{spec.torch.version}" matches no release torchrig knows ({span})',
            "pick a version in that span, or update torchrig for newer releases",
        )
    return chosen


def _variant_preference(spec: Spec, host: HostFacts, gpus: list[Gpu], reasons: list[str]):  # type: ignore[no-untyped-def]
    asked = spec.torch.variant
    if asked != "auto":
        reasons.append(f"variant: {asked}, as asked")
        return lambda release, arch: [asked]
    if not gpus:
        why = "no NVIDIA GPU on this host" if not host.gpus else 'resources.gpus = "none"'
        reasons.append(
            f"variant: cpu, because {why} (set torch.variant or plan with --host FILE "
            "for a GPU server)"
        )
        return lambda release, arch: ["cpu"]
    if _torch_from_main_index(spec):
        reasons.append("variant: only the main index's default build (sources.torch_index)")
        return lambda release, arch: [release.pypi_variant(arch)]
    reasons.append(
        "variant: the PyPI default build first, then the other CUDA builds, newest CUDA first"
    )

    def order(release: Release, arch: str) -> list[str]:
        default = release.pypi_variant(arch)
        cuda = [v for v in release.variants if v.cuda]
        cuda.sort(key=lambda v: (v.status != "stable", -_cuda_key(v.cuda)))
        names = [v.name for v in cuda]
        if default in names:
            names.remove(default)
            names.insert(0, default)
        return names

    return order


def _torch_from_main_index(spec: Spec) -> bool:
    """torch_index names PyPI (or the main index): only its default build can come from it."""
    url = spec.sources.torch_index
    return url in (spec.sources.index, PYPI) or url.rstrip("/") == "https://pypi.org/simple"


def _cuda_key(cuda: str) -> float:
    major, minor = [*cuda.split("."), "0"][:2]
    return int(major) * 100 + int(minor)


# --- checks ---------------------------------------------------------------------------------


def _check(req: _Request, release: Release, version: str, variant: Variant) -> _Verdict:
    """Every reason this candidate cannot serve, joined; hardware reasons come first since
    they are the ones a person cannot change."""
    spec, host, compat, arch, gpu_ccs = req.spec, req.host, req.compat, req.arch, req.gpu_ccs
    python = req.base.python
    label = f"torch {version} {variant.name}"
    if arch not in variant.platforms:
        # Never "does not exist": the data leaves out builds whose facts it cannot source.
        listed = [v.name for v in release.variants if arch in v.platforms]
        others = f"it lists {', '.join(listed)} for {arch}" if listed else f"none for {arch}"
        return _Verdict(False, f"{label}: no {arch} build in torchrig's data ({others})")
    problems: list[str] = []
    if not variant.cuda and gpu_ccs and spec.torch.variant == "auto":
        problems.append(
            'a CPU-only build, but this host has NVIDIA GPUs (set torch.variant = "cpu" to '
            "accept that)"
        )
    archs = variant.arch_list(arch)
    for gpu, cc in gpu_ccs:
        if variant.cuda and cc and archs and kernels_for(cc, archs) is None:
            problems.append(
                f"no kernels for {gpu.name} (sm_{cc.replace('.', '')}); this build has "
                f"{_span(archs)}"
            )
            break
    degraded = ""
    if variant.cuda and host.driver:
        major = variant.cuda_major or 0
        mvc = compat.minor_compat_for(major)
        toolkit = compat.toolkit_driver(variant.cuda)
        if mvc and driver_older_than(host.driver.version, mvc.min_driver):
            problems.append(
                f"CUDA {variant.cuda} needs NVIDIA driver >= {mvc.min_driver} (CUDA {major}.x "
                f"minor-version compatibility); this host has {host.driver.version}"
            )
        elif toolkit and driver_older_than(host.driver.version, toolkit.min_driver):
            degraded = (
                f"{label}: driver {host.driver.version} is older than CUDA {toolkit.label}'s "
                f"{toolkit.min_driver}; it runs under minor-version compatibility, but PTX "
                "JIT (Triton, torch.compile) may fail with cudaErrorUnsupportedPtxVersion; "
                "update the driver to lift this"
            )
    if python not in release.python:
        problems.append(f"no wheels for Python {python} (has {_span(release.python)})")
    patch = next(p for p in release.patches if p.version == version)
    if spec.torch.torchaudio and not patch.torchaudio:
        problems.append("no torchaudio release for it (torchaudio is in maintenance)")
    if problems:
        return _Verdict(False, f"{label}: " + "; ".join(problems))
    return _Verdict(True, degraded=degraded)


def driver_older_than(have: str, need: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    return key(have) < key(need)


def kernels_for(cc: str, archs: list[str]) -> str | None:
    """The arch entry that runs on a GPU of compute capability cc, if any.

    SASS (sm_XY) runs on the same major with minor >= Y, and the closest one is what the
    CUDA runtime loads (sm_86 serves 8.9 even when sm_80 is there too); PTX (compute_XY) is
    JIT-compiled for any newer GPU, so it is the fallback.
    """
    major, minor = (int(x) for x in cc.split("."))
    sass: tuple[int, str] | None = None
    ptx: str | None = None
    for entry in archs:
        kind, _, digits = entry.partition("_")
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            if sass is None or a_minor > sass[0]:
                sass = (a_minor, entry)
        elif kind == "compute" and (a_major, a_minor) <= (major, minor):
            ptx = entry
    return sass[1] if sass else ptx


def _span(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{items[0]} … {items[-1]}"


# --- result ---------------------------------------------------------------------------------


def _resolution(
    req: _Request, release: Release, version: str, variant: Variant, rejected: list[Rejection]
) -> Resolution:
    spec, host, compat, arch, base = req.spec, req.host, req.compat, req.arch, req.base
    gpu_ccs, reasons, warnings = req.gpu_ccs, req.reasons, req.warnings
    patch = next(p for p in release.patches if p.version == version)
    from_pypi = variant.name == release.pypi_variant(arch)
    torch_index = spec.sources.torch_index
    if torch_index == "auto":
        index = spec.sources.index if from_pypi else f"{PYTORCH_INDEX}/{variant.name}"
    else:
        index = "" if torch_index == "none" else torch_index
    # Builds off PyPI carry the variant as a local version (2.14.0+cu126); pinning it stops
    # a resolver from swapping in the PyPI build of the same number.
    local = "" if from_pypi else f"+{variant.name}"
    requirements = [f"torch=={version}{local}"]
    vision = patch.torchvision if spec.torch.torchvision else ""
    audio = patch.torchaudio if spec.torch.torchaudio else ""
    if vision:
        requirements.append(f"torchvision=={vision}{local}")
    elif spec.torch.torchvision:
        warnings.append(f"no torchvision release matches torch {version}; none installed")
    if audio:
        requirements.append(
            f"torchaudio=={audio}{local}" if patch.torchaudio_pin else f"torchaudio=={audio}"
        )

    where = "PyPI" if from_pypi and torch_index == "auto" else (index or "find_links")
    reasons.append(
        f'torch {version}: the newest release matching "{spec.torch.version}" with a '
        f"{variant.name} build that passes every check"
        if len(_candidate_versions(spec, compat)) > 1
        else f"torch {version}: as asked"
    )
    reasons.append(
        f"index: {where}" + (" (the default PyPI wheel is this variant)" if from_pypi else "")
    )
    if variant.cuda and host.driver:
        reasons.append(f"driver {host.driver.version} runs CUDA {variant.cuda}")
    elif variant.cuda:
        warnings.append(_no_driver_warning(compat, variant, gpus_present=bool(host.gpus)))
    if variant.arch_uncertain:
        warnings.append(
            f"the arch list of torch {release.line} {variant.name} is not verified from the wheel"
        )
    fits: list[GpuFit] = []
    archs = variant.arch_list(arch)
    for gpu, cc in gpu_ccs:
        kernels = kernels_for(cc, archs) if cc and archs else None
        fits.append(GpuFit(index=gpu.index, name=gpu.name, cc=cc, kernels=kernels or "?"))
        if cc and kernels:
            reasons.append(f"GPU {gpu.index} {gpu.name} (sm_{cc.replace('.', '')}) runs {kernels}")
        if cc and _cc_tuple(cc) < (7, 0):
            warnings.append(f"{gpu.name}: torch.compile needs compute capability >= 7.0 (Triton)")
        elif cc and _cc_tuple(cc) < (8, 0):
            warnings.append(
                f"{gpu.name}: no bf16 below compute capability 8.0 (use fp16 with a GradScaler); "
                "torch.compile on Volta/Turing is best effort with Triton >= 3.3"
            )
    if not variant.cuda and host.gpus and spec.resources.gpus != "none":
        warnings.append("this host has NVIDIA GPUs but the cpu build was asked for")
    platform = platform_tag(arch, base.glibc)
    return Resolution(
        torch=version,
        variant=variant.name,
        cuda=variant.cuda,
        cudnn=variant.cudnn,
        nccl=variant.nccl,
        triton=patch.triton if variant.cuda else "",
        torchvision=vision,
        torchaudio=audio,
        requirements=requirements,
        index=index,
        python=base.python,
        arch=arch,
        platform=platform,
        base=base,
        arch_list=archs,
        gpus=fits,
        reasons=reasons,
        warnings=warnings,
        rejected=rejected,
    )


def platform_tag(arch: str, glibc: str) -> str:
    """uv's --python-platform for a base: manylinux of its glibc, within what uv knows."""
    glibc_minor = int(glibc.split(".")[1])
    return f"{arch}-manylinux_2_{max(MANYLINUX_MIN, min(MANYLINUX_MAX, glibc_minor))}"


def _cc_tuple(cc: str) -> tuple[int, int]:
    major, minor = cc.split(".")
    return int(major), int(minor)


def _no_driver_warning(compat: Compat, variant: Variant, *, gpus_present: bool) -> str:
    """The same driver rule as the checks: the toolkit's own driver for the full feature set,
    the minor-version-compatibility floor as the least that runs it."""
    toolkit = compat.toolkit_driver(variant.cuda)
    mvc = compat.minor_compat_for(variant.cuda_major or 0)
    what = (
        "no NVIDIA driver is loaded (the GPUs are there)"
        if gpus_present
        else "no NVIDIA driver on this host"
    )
    need = f"the target needs one that runs CUDA {variant.cuda}"
    if toolkit is not None:
        need += f": >= {toolkit.min_driver}"
        if mvc is not None and driver_older_than(mvc.min_driver, toolkit.min_driver):
            need += f" (>= {mvc.min_driver} runs it under minor-version compatibility)"
    elif mvc is not None:
        need += f": >= {mvc.min_driver}"
    return f"{what}: {need}"


def _kernel_fix(req: _Request, candidates: list[str]) -> str:
    """Where in the data builds with kernels for the selected GPUs are: newer or older
    torch, or none at all. Only what the data can satisfy (arch, GPUs, this driver)."""
    ccs = [cc for _, cc in req.gpu_ccs if cc]
    names = ", ".join(f"{g.name} (sm_{cc.replace('.', '')})" for g, cc in req.gpu_ccs if cc)
    driver = req.host.driver.version if req.host.driver else None
    fitting: list[Version] = []
    for release in req.compat.releases:
        for variant in release.variants:
            archs = variant.arch_list(req.arch)
            if not variant.cuda or req.arch not in variant.platforms or not archs:
                continue
            mvc = req.compat.minor_compat_for(variant.cuda_major or 0)
            if driver and mvc and driver_older_than(driver, mvc.min_driver):
                continue
            if all(kernels_for(cc, archs) is not None for cc in ccs):
                fitting += [Version(p.version) for p in release.patches]
                break
    if not fitting:
        return (
            f"no build in torchrig's data has kernels for {names} on {req.arch}"
            + (f" with driver {driver}" if driver else "")
            + "; select fewer GPUs (resources.gpus)"
        )
    low, high = min(fitting), max(fitting)
    asked = [Version(v) for v in candidates]
    span = f"{low} … {high}" if low != high else str(low)
    if asked and low > max(asked):
        return f"pick a newer torch.version: {span} have kernels for {names}"
    if asked and high < min(asked):
        return f"pick an older torch.version: {span} have kernels for {names}"
    return f"pick a torch.version in {span} (builds with kernels for {names})"


def _impossible(req: _Request, rejected: list[Rejection]) -> NoBuildFits:
    spec, arch, python = req.spec, req.arch, req.base.python
    tried = len(rejected)
    # The newest candidate's reason is the most useful single line.
    first = rejected[0].reason if rejected else "nothing matched"
    fixes = []
    text = " ".join(r.reason for r in rejected)
    if "driver" in text:
        fixes.append("update the NVIDIA driver")
    if "no kernels" in text:
        fixes.append(_kernel_fix(req, [r.torch for r in rejected]))
    if "Python" in text:
        fixes.append("pick another python.version / base.distribution")
    if "torchaudio" in text:
        fixes.append("set torch.torchaudio = false")
    if spec.torch.variant != "auto":
        fixes.append('set torch.variant = "auto"')
    if spec.torch.version != "latest":
        fixes.append('widen torch.version (or "latest")')
    fixes.append("`torchrig plan --json` lists every rejected candidate")
    return NoBuildFits(
        f"no PyTorch build fits (tried {tried} candidates on {arch}, Python {python}); "
        f"newest: {first}",
        "; ".join(fixes),
        rejected,
    )
