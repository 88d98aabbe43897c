"""The plan: resolution, lock summary and what build and up would do — with no side effects.

`torchrig plan` prints this; build and up (later) execute it. Everything here is computed
from the spec, host facts, the compatibility data and the lock file, so it is cheap and can
be golden-tested.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from torchrig.compat.mirrors import find_preset
from torchrig.compat.model import Compat
from torchrig.compat.resolve import NoBuildFits, Resolution
from torchrig.errors import ResolutionError
from torchrig.host.facts import HostFacts
from torchrig.launch.mounts import CheckedMount, hf_cache_volume
from torchrig.lock.lockfile import LockFile
from torchrig.lock.make import check_lock
from torchrig.spec.model import HF_CACHE_TARGET, Sources, Spec, parse_size

GIB = 1 << 30


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class PackageSize(_Out):
    name: str
    version: str
    size: int | None


class LockSummary(_Out):
    state: str = Field(description="'fresh', 'stale', 'missing' or 'no-target'.")
    problems: list[str] = Field(default_factory=list)
    packages: int = 0
    download_bytes: int = 0
    largest: list[PackageSize] = Field(default_factory=list)


class BuildPlan(_Out):
    image: str = Field(description="Tag; the content digest means unchanged inputs never rebuild.")
    base: str
    flavour: str
    layers: list[str]


class MountPlan(_Out):
    source: str = Field(description="The host path as torchrig.toml writes it.")
    host_path: str | None = Field(
        description="Resolved on this machine (symlinks followed); null when planned for "
        "another host with --host, where this machine's files say nothing."
    )
    target: str
    read_only: bool


class CachePlan(_Out):
    huggingface: str = Field(description="'user', 'host' or 'none' (cache.huggingface).")
    volume: str | None
    target: str | None


class SourcePlan(_Out):
    key: str = Field(description="The [sources] key.")
    value: str | list[str]
    origin: str = Field(description="'torchrig.toml', 'preset <name>' or 'default'.")


class UpPlan(_Out):
    engine: str
    container: str
    ports: dict[str, str]
    gpus: str
    shm: str
    workspace: str = "/workspace"
    state_volume: str
    mounts: list[MountPlan] = Field(default_factory=list)
    cache: CachePlan | None = None
    notes: list[str] = Field(default_factory=list)


class Chosen(_Out):
    torch: str
    variant: str


class Plan(_Out):
    project: str
    chosen: Chosen = Field(description="The build chosen; null in a failed plan's JSON.")
    resolution: Resolution
    lock: LockSummary
    sources: list[SourcePlan] = Field(default_factory=list)
    build: BuildPlan
    up: UpPlan


def summarise_lock(lock: LockFile | None, spec: Spec, compat: Compat, variant: str) -> LockSummary:
    if lock is None:
        return LockSummary(state="missing", problems=["no torchrig.lock yet: run `torchrig lock`"])
    problems = check_lock(lock, spec, compat)
    target = lock.target(variant)
    if target is None:
        have = ", ".join(t.variant for t in lock.targets)
        return LockSummary(
            state="no-target",
            problems=[f"the lock has targets {have}, not {variant}: run `torchrig lock`"],
        )
    by_size = sorted(target.packages, key=lambda p: p.size or 0, reverse=True)
    return LockSummary(
        state="stale" if problems else "fresh",
        problems=problems,
        packages=len(target.packages),
        download_bytes=target.download_bytes,
        largest=[PackageSize(name=p.name, version=p.version, size=p.size) for p in by_size[:5]],
    )


def shm_size(spec: Spec, host: HostFacts) -> str:
    """/dev/shm for the container: a quarter of RAM within [1g, 64g], unless the spec says.

    DataLoader workers pass every batch through /dev/shm and NCCL uses it between local
    ranks; Docker's 64 MB default breaks both (FACTS: bus error in worker).
    """
    if spec.resources.shm != "auto":
        return spec.resources.shm
    ram = host.system.memory_bytes or 8 * GIB
    gib = max(1, min(64, ram // 4 // GIB))
    return f"{gib}g"


def image_tag(spec: Spec, spec_digest: str, lock: LockFile | None, variant: str) -> str:
    target = lock.target(variant) if lock else None
    material = f"{spec_digest}\n{target.inputs_digest if target else 'unlocked'}\n"
    if target:
        material += "".join(f"{p.name}=={p.version}:{p.sha256}\n" for p in target.packages)
    digest = hashlib.sha256(material.encode()).hexdigest()[:12]
    return f"torchrig/{spec.project.name}:{variant}-{digest}"


def _engine(host: HostFacts) -> tuple[str, list[str]]:
    usable = [e for e in host.engines if e.present and e.reachable]
    if usable:
        return usable[0].name, []
    present = [e for e in host.engines if e.present]
    if present:
        return present[0].name, [
            f"{present[0].name} is installed but not usable: {present[0].error}"
        ]
    return "none", ["no container engine found: `torchrig up` will offer to install one"]


def _gpu_flag(spec: Spec, resolution: Resolution) -> str:
    if not resolution.cuda or spec.resources.gpus == "none":
        return "none"
    sel = spec.resources.gpus
    if sel == "all":
        return "all"
    if isinstance(sel, int):
        return f"count={sel}"
    return "device=" + ",".join(sel) if isinstance(sel, list) else str(sel)


def plan_sources(spec: Spec, resolution: Resolution) -> list[SourcePlan]:
    """Each [sources] value the lock, build and workbench use, and where it came from."""
    sources = spec.sources
    preset = find_preset(sources.preset)
    preset_values: dict[str, object] = dict(preset.spec_values()) if preset else {}
    if preset is not None and resolution.base.mirror:
        preset_values["apt_mirror"] = resolution.base.mirror
    out: list[SourcePlan] = []
    for key, field in Sources.model_fields.items():
        value = getattr(sources, key)
        if key == "apt_mirror" and value == "auto":
            value = resolution.base.mirror or value
        default = field.get_default(call_default_factory=True)
        if key == "preset" and value == "none":
            continue
        if preset is not None and key in preset_values and value == preset_values[key]:
            origin = f"preset {preset.name}"
        elif value == default or (key == "apt_mirror" and sources.apt_mirror == "auto"):
            if value in ("", []) or key in ("registry",):
                continue  # nothing set and nothing to say
            origin = "default"
        else:
            origin = "torchrig.toml"
        out.append(
            SourcePlan(
                key=key, value=list(value) if isinstance(value, list) else value, origin=origin
            )
        )
    return out


def plan_mounts(spec: Spec, checked: list[CheckedMount] | None) -> list[MountPlan]:
    if checked is None:
        return [
            MountPlan(source=m.source, host_path=None, target=m.target, read_only=m.read_only)
            for m in spec.mounts
        ]
    return [
        MountPlan(
            source=m.source, host_path=str(m.host_path), target=m.target, read_only=m.read_only
        )
        for m in checked
    ]


def plan_cache(spec: Spec, host: HostFacts) -> CachePlan:
    # Imported here: the run plan imports this module.
    from torchrig.launch.runplan import identity

    volume = hf_cache_volume(spec, identity(spec, host).uid)
    return CachePlan(
        huggingface=spec.cache.huggingface,
        volume=volume,
        target=HF_CACHE_TARGET if volume else None,
    )


def make_plan(
    spec: Spec,
    spec_digest: str,
    host: HostFacts,
    compat: Compat,
    resolution: Resolution,
    lock: LockFile | None,
    checked_mounts: list[CheckedMount] | None = None,
) -> Plan:
    """checked_mounts: the spec's mounts as checked on this machine; None when planning for
    another host (--host FILE), whose files this machine cannot see."""
    engine, notes = _engine(host)
    ports = {
        name: f"127.0.0.1:{service.port or 'auto'}"
        for name in ("jupyter", "ssh", "tensorboard")
        if (service := getattr(spec.services, name)).enabled
    }
    shm = shm_size(spec, host)
    if host.system.memory_bytes and parse_size(shm) > host.system.memory_bytes:
        notes.append(f"shm {shm} is larger than this host's RAM")
    layers = [
        f"base: {resolution.base.distribution} ({resolution.base.image})",
        "system packages: python3, gcc and headers (torch.compile), openssh-server, tini"
        + (", " + ", ".join(spec.base.packages) if spec.base.packages else ""),
        f"torch layer: torch {resolution.torch} ({resolution.variant})"
        + (", triton, CUDA libraries" if resolution.cuda else ""),
        f"stack: {spec.python.stack}",
        f"your packages: {len(spec.python.packages)}",
        "torchrig (doctor, verify, bench, recipes)",
        "labels",
    ]
    if spec.torch.flavour == "devel" and resolution.cuda:
        layers.insert(3, f"devel: nvcc and CUDA headers for CUDA {resolution.cuda}")
    return Plan(
        project=spec.project.name,
        chosen=Chosen(torch=resolution.torch, variant=resolution.variant),
        resolution=resolution,
        lock=summarise_lock(lock, spec, compat, resolution.variant),
        sources=plan_sources(spec, resolution),
        build=BuildPlan(
            image=image_tag(spec, spec_digest, lock, resolution.variant),
            base=resolution.base.image,
            flavour=spec.torch.flavour,
            layers=layers,
        ),
        up=UpPlan(
            engine=engine,
            container=f"torchrig-{spec.project.name}",
            ports=ports,
            gpus=_gpu_flag(spec, resolution),
            shm=shm,
            state_volume=f"torchrig-{spec.project.name}-state",
            mounts=plan_mounts(spec, checked_mounts),
            cache=plan_cache(spec, host),
            notes=notes,
        ),
    )


def failed_plan(spec: Spec, error: ResolutionError) -> dict[str, object]:
    """`plan --json` when no build fits: the same top-level keys scripts test first
    ("chosen" is null), the error line, and every candidate rejected with its reason."""
    rejected = error.rejected if isinstance(error, NoBuildFits) else []
    return {
        "project": spec.project.name,
        "chosen": None,
        "error": error.one_line(),
        "rejected": [r.model_dump(mode="json") for r in rejected],
    }
