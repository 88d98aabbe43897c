"""The plan: what build, up, export and run --fresh will do, computed with no side effects.

    session = open_session(Path("torchrig.toml"), probe_host())
    the_plan = plan(session.spec, session.host, session.compat, session.lock(),
                    local_facts(session))        # launch/local.py: what this machine says
    the_plan.image.tag, the_plan.run             # the tag `build` makes, the `docker run` args

`torchrig plan` prints it; `build` writes `plan.image`'s context and builds `plan.image.tag`;
`up` and `run --fresh` run `plan.run`; `export compose|devcontainer` render it. Nothing here
reads a file or asks the engine: what the filesystem and the engine say comes in as
arguments (`Local`), so a plan is cheap and can be golden-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from torchrig import contract
from torchrig.compat.mirrors import find_preset
from torchrig.compat.model import Compat
from torchrig.compat.resolve import NoBuildFits, Resolution, resolve
from torchrig.engine.base import RunSpec
from torchrig.errors import ResolutionError
from torchrig.host.facts import HostFacts
from torchrig.launch.mounts import CheckedMount, hf_cache_volume
from torchrig.lock.lockfile import LockFile, Target
from torchrig.lock.make import check_lock
from torchrig.plan import names
from torchrig.plan.image import BaseRef, ContextFile, ImagePlan, image_plan
from torchrig.plan.run import gpu_flag, identity, run_spec, shm_size, spec_ports
from torchrig.spec.load import spec_digest
from torchrig.spec.model import HF_CACHE_TARGET, Sources, Spec, parse_size

__all__ = ["BaseRef", "ContextFile", "ImagePlan", "Local", "Plan", "plan", "shm_size"]


@dataclass(frozen=True)
class Local:
    """What this machine says, gathered by launch/local.py (or written out by a test)."""

    project_dir: Path
    """The folder of torchrig.toml."""
    workspace: Path | None = None
    """The absolute folder mounted at /workspace (default: project_dir)."""
    mounts: list[CheckedMount] | None = None
    """The spec's [[mounts]] checked here; None when planning for another host (--host)."""
    ports: dict[str, int] | None = None
    """Host ports chosen free on 127.0.0.1; None: the spec's."""
    keys_file: Path | None = None
    """The public keys file mounted read-only at contract.KEYS_FILE."""
    env_file: Path | None = None
    """The private copy of torchrig.env handed to the engine (--env-file)."""
    base: BaseRef | None = None
    """The image the build builds FROM, if obtained (or found without side effects)."""
    torchrig_files: tuple[ContextFile, ...] = ()
    """torchrig's own package as the build copies it."""
    ca_certificates: tuple[tuple[str, bytes], ...] = ()
    """(stem, PEM): the spec's sources.ca_certificates, then the host's local CAs."""


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
    image: str | None = Field(
        description="The tag the build makes (image.tag); null until it can be known."
    )
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


class UserPlan(_Out):
    name: str
    uid: int
    gid: int


class NamesPlan(_Out):
    container: str
    state_volume: str
    network: str
    hf_cache_volume: str | None


class Plan(_Out):
    project: str
    chosen: Chosen = Field(description="The build chosen; null in a failed plan's JSON.")
    resolution: Resolution
    lock: LockSummary
    sources: list[SourcePlan] = Field(default_factory=list)
    build: BuildPlan
    up: UpPlan
    image: ImagePlan
    user: UserPlan
    names: NamesPlan
    workspace: str = Field(description="The host folder mounted at /workspace.")
    run: RunSpec = Field(
        description="Every `docker run` argument of the workbench; run.image is image.tag, "
        "or empty while that is null."
    )


# RunSpec names Path only for type checkers (engine/base.py): pydantic needs it resolved.
Plan.model_rebuild(_types_namespace={"Path": Path})


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
    volume = hf_cache_volume(spec, identity(spec, host).uid)
    return CachePlan(
        huggingface=spec.cache.huggingface,
        volume=volume,
        target=HF_CACHE_TARGET if volume else None,
    )


def layers(spec: Spec, resolution: Resolution) -> list[str]:
    out = [
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
        out.insert(3, f"devel: nvcc and CUDA headers for CUDA {resolution.cuda}")
    return out


def plan(
    spec: Spec,
    host: HostFacts,
    compat: Compat,
    lock: LockFile | None,
    local: Local,
    *,
    resolution: Resolution | None = None,
    target: Target | None = None,
) -> Plan:
    """The whole plan. Raises ResolutionError (exit 3) when no build fits.

    resolution: already resolved for this spec, host and compat (a Session has it);
    target: the lock target the caller already checked (build refuses a stale lock first).
    """
    resolution = resolution or resolve(spec, host, compat)
    digest = spec_digest(spec)
    engine, notes = _engine(host)
    ports = {
        name: f"127.0.0.1:{service.port or 'auto'}"
        for name in (*contract.SERVICES, *contract.JOB_SERVICES)
        if (service := getattr(spec.services, name)).enabled
    }
    shm = shm_size(spec, host)
    if host.system.memory_bytes and parse_size(shm) > host.system.memory_bytes:
        notes.append(f"shm {shm} is larger than this host's RAM")
    summary = summarise_lock(lock, spec, compat, resolution.variant)
    if target is None and summary.state == "fresh" and lock is not None:
        target = lock.target(resolution.variant)
    image = image_plan(
        spec,
        digest,
        compat,
        resolution,
        target,
        local.base,
        torchrig_files=local.torchrig_files,
        ca_certificates=local.ca_certificates,
        pending=[] if target is not None else summary.problems,
    )
    who = identity(spec, host)
    cache = plan_cache(spec, host)
    workspace = local.workspace or local.project_dir
    run = run_spec(
        spec,
        resolution,
        host,
        image.tag or "",
        workspace=workspace,
        ports=local.ports if local.ports is not None else spec_ports(spec),
        keys_file=local.keys_file,
        env_file=local.env_file,
        mounts=local.mounts or [],
    )
    return Plan(
        project=spec.project.name,
        chosen=Chosen(torch=resolution.torch, variant=resolution.variant),
        resolution=resolution,
        lock=summary,
        sources=plan_sources(spec, resolution),
        build=BuildPlan(
            image=image.tag,
            base=resolution.base.image,
            flavour=spec.torch.flavour,
            layers=layers(spec, resolution),
        ),
        up=UpPlan(
            engine=engine,
            container=names.container_name(spec),
            ports=ports,
            gpus=gpu_flag(spec, resolution),
            shm=shm,
            state_volume=names.state_volume(spec),
            mounts=plan_mounts(spec, local.mounts),
            cache=cache,
            notes=notes,
        ),
        image=image,
        user=UserPlan(name=who.name, uid=who.uid, gid=who.gid),
        names=NamesPlan(
            container=names.container_name(spec),
            state_volume=names.state_volume(spec),
            network=names.network_name(spec),
            hf_cache_volume=cache.volume,
        ),
        workspace=str(workspace),
        run=run,
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
