"""Everything a verb needs, loaded once: a Session (spec, host, resolution, lock) for the
verbs that build or run, a Project (spec and host only) for those that reach a workbench.

build, up, export and run start from the same facts; this keeps that sequence (and its
one-line errors) in one place. down, status, logs, shell, exec, stop and jobs find the
workbench by the names its spec gives and never resolve PyTorch: after a driver change or
a compat-data update that makes resolution fail, a person can still stop what is running.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from torchrig.compat.model import Compat, Distribution, load_compat
from torchrig.compat.resolve import Resolution, resolve
from torchrig.engine.base import Engine, Progress
from torchrig.host.facts import HostFacts
from torchrig.lock.lockfile import LockFile, Target, read_lock
from torchrig.plan.plan import Local, Plan, plan
from torchrig.spec.load import load_spec, spec_digest
from torchrig.spec.model import Spec


class Addressed(Protocol):
    """What a verb that reaches an existing workbench needs: the spec (for its names) and
    the host facts (for the engine). A Session is one, and so is a Project."""

    spec: Spec
    host: HostFacts
    host_from_file: bool

    @property
    def project_dir(self) -> Path: ...


@dataclass
class Project:
    """A workbench's project without its resolution: enough to find and address it."""

    spec_path: Path
    spec: Spec
    host: HostFacts
    host_from_file: bool = False

    @property
    def project_dir(self) -> Path:
        return self.spec_path.resolve().parent


def open_project(spec_path: Path, host: HostFacts, *, host_from_file: bool = False) -> Project:
    return Project(spec_path, load_spec(spec_path), host, host_from_file)


@dataclass
class Session:
    spec_path: Path
    spec: Spec
    digest: str
    host: HostFacts
    compat: Compat
    resolution: Resolution
    # Facts from --host FILE describe the machine the image is for, not this one.
    host_from_file: bool = False

    @property
    def project_dir(self) -> Path:
        return self.spec_path.resolve().parent

    @property
    def lock_path(self) -> Path:
        return self.project_dir / "torchrig.lock"

    def lock(self) -> LockFile | None:
        return read_lock(self.lock_path) if self.lock_path.exists() else None

    def distribution(self) -> Distribution | None:
        return self.compat.distribution(self.resolution.base.distribution)

    def plan(
        self, local: Local, *, lock: LockFile | None = None, target: Target | None = None
    ) -> Plan:
        """The plan every verb executes (plan/plan.py); lock: the one just read or made."""
        return plan(
            self.spec,
            self.host,
            self.compat,
            lock if lock is not None else self.lock(),
            local,
            resolution=self.resolution,
            target=target,
        )


def open_session(
    spec_path: Path,
    host: HostFacts,
    *,
    host_from_file: bool = False,
    spec: Spec | None = None,
    compat: Compat | None = None,
) -> Session:
    """Load the spec (or take `spec`, e.g. with a --variant applied), resolve PyTorch for
    `host` (facts the CLI probed or read from --host FILE). Raises ResolutionError (exit 3)."""
    spec = spec or load_spec(spec_path)
    compat = compat or load_compat()
    return Session(
        spec_path=spec_path,
        spec=spec,
        digest=spec_digest(spec),
        host=host,
        compat=compat,
        resolution=resolve(spec, host, compat),
        host_from_file=host_from_file,
    )


def engine_for(session: Addressed, name: str | None) -> Engine:
    """The engine on this machine. With --host FILE (planning or building for another
    machine, e.g. a GPU server from a laptop), the file's engines are that machine's: the
    build runs here, so this machine's engines are probed instead."""
    from torchrig.engine.select import choose_engine

    host = session.host
    if session.host_from_file:
        from torchrig.host.probe import ENGINE_NAMES, probe_engine

        wanted = [name] if name in ENGINE_NAMES else list(ENGINE_NAMES)
        host = host.model_copy(update={"engines": [probe_engine(n)[0] for n in wanted]})
    return choose_engine(name, host)


def base_image(
    session: Session, engine: Engine, progress: Progress | None
) -> tuple[str, tuple[str, ...]]:
    """The image to build FROM, and the apt components to use with it (image/obtain.py
    decides between the registry, the shared cache and a bootstrap)."""
    from torchrig.image.obtain import obtain_base

    dist = session.distribution()
    base = obtain_base(
        session.resolution.base,
        tuple(dist.components) if dist else ("main",),
        session.resolution.arch,
        engine,
        progress,
        registry_setting=session.spec.sources.registry,
        allow_unverified=session.spec.base.allow_unverified,
    )
    return base.image, base.components
