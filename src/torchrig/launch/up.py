"""Bring a workbench up (lock if needed, build if needed, run, wait until healthy) and down."""

from __future__ import annotations

import http.client
import os
import pwd
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torchrig import contract, userfiles
from torchrig.engine.base import Engine, HealthCheck, Progress, RunSpec, ports_from_inspect
from torchrig.errors import HostError, ToolError, UsageError
from torchrig.fsutil import write_atomically
from torchrig.image.build import BuildResult, build_image, locked_target
from torchrig.launch import rlimits, workspace_access
from torchrig.launch.envfile import check_env_file
from torchrig.launch.local import (
    authorized_keys,
    choose_ports,
    keys_file,
    local_facts,
    record_base,
    state_dir,
)
from torchrig.launch.session import Addressed, Session, base_image
from torchrig.lock.lockfile import LockFile, render_lock
from torchrig.lock.make import make_lock
from torchrig.plan.image import BaseRef
from torchrig.plan.names import PROJECT_LABEL, container_name, network_name, state_volume
from torchrig.plan.plan import Plan
from torchrig.plan.run import Identity, check_gpu_runtime
from torchrig.spec.model import Spec

__all__ = ["Built", "build", "down", "last_image", "state_dir", "up"]

HEALTHY_TIMEOUT_S = 120.0
TOKEN_FILE = ".torchrig/jupyter/token"


@dataclass(frozen=True)
class Running:
    name: str
    image: str
    user: str
    uid: int
    gid: int
    ports: dict[str, int]
    workspace: str
    state_volume: str
    token: str
    built: bool
    seconds_to_healthy: float

    @property
    def jupyter_url(self) -> str:
        port = self.ports.get("jupyter")
        return f"http://127.0.0.1:{port}/lab?token={self.token}" if port else ""

    @property
    def ssh_command(self) -> str:
        port = self.ports.get("ssh")
        return f"ssh -p {port} {self.user}@127.0.0.1" if port else ""


def stage_env_file(session: Session, env_file: Path | None) -> Path | None:
    """The secrets file for the engine: a private copy read with the project owner's rights.

    The engine CLI reads --env-file itself, as whoever runs it; as root, a torchrig.env
    that is a symlink to a root-only file would hand that file to the project's owner. So
    torchrig reads it (userfiles: as the owner, no symlink out of the project) and gives
    the engine a 0600 copy in its state folder instead. torchrig.env beside the spec is
    used when --env-file is not given, even as a dangling symlink (then it is refused).
    """
    source = env_file
    if source is None:
        beside = session.project_dir / "torchrig.env"
        source = beside if os.path.lexists(beside) else None
    if source is None:
        return None
    copy = userfiles.private_copy(
        source,
        session.project_dir,
        state_dir(session.spec.project.name) / "env",
        "env file",
        "make it a file of KEY=value lines that the project's owner may read, inside the "
        "project folder or named with --env-file",
    )
    try:
        check_env_file(copy.read_text(errors="replace"), str(source))
    except UsageError:
        copy.unlink()
        raise
    return copy


def ensure_lock(session: Session, progress: Progress) -> LockFile:
    """A project with no lock gets one; an existing lock is never rewritten behind your back."""
    lock = session.lock()
    if lock is not None:
        return lock
    progress("no torchrig.lock yet: locking every package with its sha256")
    lock = make_lock(
        session.spec, session.digest, [session.resolution], project=session.project_dir
    )
    write_atomically(session.lock_path, render_lock(lock))
    # The lock as the file holds it, as `plan` and the next build read it: the image's
    # requirements (and so its tag) come from the file, not from uv's answer.
    written = session.lock()
    assert written is not None
    return written


@dataclass(frozen=True)
class Built:
    """A build and the plan it executed."""

    result: BuildResult
    plan: Plan

    @property
    def tag(self) -> str:
        return self.result.tag

    @property
    def built(self) -> bool:
        return self.result.built


def _source_of(session: Session, image: str) -> str:
    if session.resolution.base.distribution == "image":
        return "spec"
    return "registry" if "@sha256:" in image else "bootstrap"


def build(
    session: Session,
    engine: Engine,
    progress: Progress,
    *,
    no_cache: bool = False,
    workspace: Path | None = None,
    env_file: Path | None = None,
) -> Built:
    """Lock if there is no lock, obtain the base, plan, and build the plan's image."""
    lock = ensure_lock(session, progress)
    target = locked_target(session.spec, session.compat, lock, session.resolution.variant)
    image, components = base_image(session, engine, progress)
    base = BaseRef(image, components, _source_of(session, image))
    local = local_facts(
        session, base=base, workspace=workspace, env_file=env_file, mounts_here=True
    )
    the_plan = session.plan(local, lock=lock, target=target)
    result = build_image(the_plan.image, target, engine, no_cache=no_cache, progress=progress)
    record_base(session, base)
    # The last image built, as older torchrig versions recorded it.
    write_atomically(state_dir(session.spec.project.name) / "image", result.tag + "\n")
    return Built(result, the_plan)


def last_image(project: str) -> str | None:
    path = state_dir(project) / "image"
    return path.read_text().strip() if path.exists() else None


def up(
    session: Session,
    engine: Engine,
    progress: Progress,
    *,
    workspace: Path | None = None,
    env_file: Path | None = None,
) -> Running:
    spec = session.spec
    env_file = stage_env_file(session, env_file)
    # Fail on bad input before any build: the workspace, the env file and the mounts are
    # checked while gathering the facts, the GPU runtime against the plan.
    local = local_facts(
        session, workspace=workspace, env_file=env_file, image_files=False, mounts_here=True
    )
    checked = session.plan(local)
    check_gpu_runtime(checked.run.gpus, engine.name, session.host)
    keys = authorized_keys(spec, project=session.project_dir)
    if spec.services.ssh.enabled and not keys:
        progress("no SSH public key found (~/.ssh/*.pub or user.authorized_keys): ssh login is off")
    state_dir(spec.project.name)
    write_atomically(keys_file(spec), keys)
    who = Identity(checked.user.name, checked.user.uid, checked.user.gid)
    where = Path(checked.workspace)
    needs_access = check_workspace_access(where, spec, who)
    built = build(session, engine, progress, workspace=workspace, env_file=env_file)
    if needs_access:
        give_workspace_access(where, spec, who, progress)
    name = checked.names.container
    volume = checked.names.state_volume
    existing, volume_there, network_there = _look_up(engine, name, volume, checked.run.network)
    if existing is not None:
        running = (existing.get("State") or {}).get("Running")
        if (
            running
            and existing.get("Config", {}).get("Image") == built.tag
            and not _other_user(existing, who)
        ):
            progress(f"{name} is already up with {built.tag}")
            # Its URLs only once it answers, as after a fresh start (it may be restarting).
            wait_healthy(engine, name)
            return _describe(engine, name, built, time.perf_counter(), recreated=False)
        progress(f"replacing {name} (its state volume is kept)")
        engine.remove(name, force=True)
    # Host ports are chosen now, after the old container let go of its own; the image is
    # the plan's tag as the build just made it.
    run = replace(session.plan(replace(local, ports=choose_ports(spec))).run, image=built.tag)
    volume_is_new = not volume_there
    if volume_is_new:
        engine.volume_create(volume, labels={PROJECT_LABEL: spec.project.name})
    network_is_new = ensure_network(engine, run, exists=network_there)
    start = time.perf_counter()
    try:
        run_with_fallback(engine, run, progress)
        wait_healthy(engine, name, check=run.healthcheck, gate=jupyter_answers(run))
    except BaseException:
        # Nothing half-built: the container goes, and the volume and network too if this
        # run made them.
        engine.remove(name, force=True)
        if volume_is_new:
            engine.volume_remove(volume, force=True)
        if network_is_new and run.network:
            engine.network_remove(run.network)
        raise
    return _describe(engine, name, built, start, recreated=True)


def _other_user(container: dict[str, Any], who: Identity) -> bool:
    """A workbench started for another UID (e.g. 1000, torchrig's old default as root):
    recreated, so `exec` and jobs (which use `identity`) find the user they expect."""
    env = (container.get("Config") or {}).get("Env") or []
    uids = [e.split("=", 1)[1] for e in env if e.startswith(f"{contract.ENV_UID}=")]
    return bool(uids) and uids[0] != str(who.uid)


def _look_up(
    engine: Engine, name: str, volume: str, network: str | None
) -> tuple[dict[str, Any] | None, bool, bool | None]:
    """The container's inspect document, whether the state volume and the network exist:
    three engine calls on `up`'s way to the start, made at once (issue 18: each is a CLI
    start and a daemon round trip, 0.1-0.2 s on the 2-core test host). The network is
    looked up only where `up` makes one (None: not asked)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        container = pool.submit(engine.inspect, name)
        has_volume = pool.submit(engine.volume_exists, volume)
        has_network = (
            pool.submit(engine.network_exists, network)
            if network and engine.bridge_networks
            else None
        )
        return (
            container.result(),
            has_volume.result(),
            None if has_network is None else has_network.result(),
        )


def ensure_network(engine: Engine, run: RunSpec, *, exists: bool | None = None) -> bool:
    """The workbench's own network (no other container on its bridge); True if made now.
    `exists`: already looked up (see _look_up); None looks it up here."""
    network = run.network
    if not network or not engine.bridge_networks:
        return False
    if exists is None:
        exists = engine.network_exists(network)
    if exists:
        return False
    engine.network_create(network, labels={PROJECT_LABEL: run.labels.get(PROJECT_LABEL, "")})
    return True


def check_workspace_access(workspace: Path, spec: Spec, who: Identity) -> bool:
    """Before any build: may the workbench user write the workspace, or can torchrig let
    it? True when `give_workspace_access` has something to do.

    Only as root: then the workbench user is not this user (never root in the workbench).
    A person's own project maps to their own UID and is theirs by construction. A
    root-owned folder gets an ACL entry for the workbench UID (workspace_access); the ids
    torchrig chose for it must belong to no host account; a folder of another person is
    never changed (they run torchrig themselves, or the spec names their ids).
    """
    if os.geteuid() != 0:
        return False
    workspace_access.check_ids_free(
        who.uid if spec.user.uid == "auto" else None,
        who.gid if spec.user.gid == "auto" else None,
    )
    if workspace_access.has_write(workspace, who.uid, who.gid):
        return False
    st = workspace.stat()
    if st.st_uid != 0:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = f"uid {st.st_uid}"
        raise UsageError(
            f"the workspace {workspace} belongs to {owner} ({st.st_uid}:{st.st_gid}, mode "
            f"{stat.S_IMODE(st.st_mode):04o}) and is not writable by the workbench user "
            f"{who.name} (uid {who.uid}); torchrig changes the rights only of root's folders",
            f"run torchrig as {owner} (`sudo -u {owner} torchrig up`), or set [user] "
            f"uid = {st.st_uid} and gid = {st.st_gid} in torchrig.toml",
        )
    workspace_access.probe(workspace, who.uid)
    return True


def give_workspace_access(workspace: Path, spec: Spec, who: Identity, progress: Progress) -> None:
    """Add the workbench UID's ACL entry to the root-owned workspace; say so in one line."""
    done = workspace_access.grant(workspace, who.uid)
    st = workspace.stat()
    pinned = spec.user.uid != "auto" or spec.user.gid != "auto"
    why = (
        "[user] uid/gid in torchrig.toml"
        if pinned
        else "torchrig's default as root: no host account or subuid range has them"
    )
    skipped = []
    if done.hard_links:
        skipped.append(f"{done.hard_links} hard-linked files")
    if done.other_filesystem:
        skipped.append(f"{len(done.other_filesystem)} mounts inside")
    left = f"; left alone: {', '.join(skipped)}" if skipped else ""
    progress(
        f"as root: the workbench user {who.name} is uid {who.uid}, gid {who.gid} ({why}); "
        f"gave it the owner's rights on {workspace} and its {done.entries - 1} entries with "
        f"a POSIX ACL (u:{who.uid}, inherited by new files; the folder stays "
        f"{st.st_uid}:{st.st_gid}{left}): see `getfacl {workspace}`"
    )


def run_with_fallback(engine: Engine, run: RunSpec, progress: Progress) -> None:
    """Run; if this host forbids raising rlimits (no CAP_SYS_RESOURCE for the daemon, or
    rootful Podman 4 refusing any --ulimit), run without them and say what that costs.
    A refusal is remembered until the next boot (launch/rlimits.py): no failed run each time."""
    without = (
        "this host does not let containers raise memlock/stack limits: running without "
        "them (NCCL over RDMA may fail with 'ibv_reg_mr failed: Cannot allocate memory')"
    )
    if run.ulimits and rlimits.refused(engine.name):
        progress(without)
        engine.run(replace(run, ulimits={}))
        return
    try:
        engine.run(run)
    except ToolError as exc:
        if "rlimit" not in str(exc).lower() or not run.ulimits:
            raise
        progress(without)
        rlimits.remember_refused(engine.name)
        engine.remove(run.name or "", force=True)
        engine.run(replace(run, ulimits={}))


def jupyter_answers(run: RunSpec) -> Callable[[], bool] | None:
    """Whether JupyterLab answers HTTP on its host port now, asked from the host; None
    where the run publishes no JupyterLab port."""
    ports = [p for p in run.ports if p.container_port == contract.JUPYTER_PORT and p.host_port]
    if not ports:
        return None
    host = "127.0.0.1" if ports[0].host_ip in ("", "0.0.0.0") else ports[0].host_ip
    url = f"http://{host}:{ports[0].host_port}/api"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy

    def answers() -> bool:
        try:
            with direct.open(url, timeout=0.5):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer: it serves
        except (OSError, http.client.HTTPException):
            # Refused, or the engine's port proxy accepted and closed: not yet.
            return False

    return answers


def wait_healthy(
    engine: Engine,
    name: str,
    timeout: float = HEALTHY_TIMEOUT_S,
    check: HealthCheck | None = None,
    gate: Callable[[], bool] | None = None,
) -> None:
    """Until the engine reports the container healthy, or `check` (the run's own health
    check) passes when run now: the engine runs it first `interval` (5 s) after the start,
    so JupyterLab answered 3-5 s before `up` could say so (issue 18; Docker 20.10 and
    Podman 4 have no start interval).

    `gate`: a cheap question asked from the host (JupyterLab answering on its port) before
    `check` is run in the container. Each in-container check starts a Python there; run
    every poll while JupyterLab starts, they took CPU from it on a 2-core host, and the
    check cannot pass before JupyterLab answers anyway."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = engine.inspect(name)
        if info is None:
            raise ToolError(f"{name} disappeared while starting", "see `torchrig logs`")
        state = info.get("State") or {}
        # The status in the document just read (one engine call a poll, not two); an
        # engine whose checks need a nudge (Podman without systemd) runs one here.
        health = engine.health_of(name, info)
        if health == "healthy":
            return
        if (
            check is not None
            and health == "starting"
            and state.get("Running")
            and (gate is None or gate())
            and passes_now(engine, name, check.command, check.timeout_s)
        ):
            return
        if not state.get("Running") or health == "unhealthy":
            tail = " | ".join(list(engine.logs(name, tail=15)))
            raise ToolError(
                f"{name} did not start: {'unhealthy' if state.get('Running') else 'exited'}; "
                f"last log lines: {tail[-1500:]}",
                "fix what the log says; `torchrig up --debug` shows the engine commands",
            )
        time.sleep(0.2)
    raise ToolError(f"{name} was not healthy within {timeout:.0f} s", "see `torchrig logs`")


def passes_now(engine: Engine, name: str, command: str, timeout_s: float) -> bool:
    """Whether the container's health check passes when run now, through exec as the
    engine runs it. Until the engine's first check (5 s after the start) the engine says
    "starting" of a workbench that already answers; `up` and `status` ask this instead."""
    try:
        probe = engine.exec(name, ["/bin/sh", "-c", command], timeout_s=timeout_s + 5)
    except ToolError:
        return False  # slow or refused now: the engine's own check still decides
    return probe.returncode == 0


def _describe(
    engine: Engine,
    name: str,
    result: Built,
    start: float,
    *,
    recreated: bool,
) -> Running:
    info = engine.inspect(name) or {}
    env = dict(e.split("=", 1) for e in info.get("Config", {}).get("Env", []) if "=" in e)
    user = env.get(contract.ENV_USER, "")
    uid, gid = int(env.get(contract.ENV_UID, "0")), int(env.get(contract.ENV_GID, "0"))
    ports = {}
    published = ports_from_inspect(info)  # the document above: no call per service
    for service, container_port in contract.PORTS.items():
        bound = published.get(f"{container_port}/tcp") or []
        if bound:
            ports[service] = bound[0][1]
    token = ""
    if "jupyter" in ports:
        done = engine.exec(name, ["cat", f"/home/{user}/{TOKEN_FILE}"], user=f"{uid}:{gid}")
        if done.returncode != 0:
            raise HostError(f"could not read the Jupyter token in {name}", "see `torchrig logs`")
        token = done.stdout.strip()
    mounts = {m.get("Destination"): m for m in info.get("Mounts", [])}
    workspace = (mounts.get(contract.WORKSPACE) or {}).get("Source", "")
    volume = (mounts.get(f"/home/{user}") or {}).get("Name", "")
    return Running(
        name=name,
        image=result.tag,
        user=user,
        uid=uid,
        gid=gid,
        ports=ports,
        workspace=workspace,
        state_volume=volume,
        token=token,
        built=result.built,
        seconds_to_healthy=round(time.perf_counter() - start, 2) if recreated else 0.0,
    )


def down(
    session: Addressed, engine: Engine, progress: Progress, *, purge: bool = False
) -> list[str]:
    """Stop and remove the container; keep the state volume unless purge."""
    name = container_name(session.spec)
    done = []
    if engine.inspect(name) is not None:
        engine.stop(name, timeout=session.spec.resources.stop_timeout)
        engine.remove(name, force=True)
        done.append(f"removed {name}")
    network = network_name(session.spec)
    if engine.bridge_networks and engine.network_exists(network):
        try:
            engine.network_remove(network)
            done.append(f"removed network {network}")
        except ToolError:
            # A `torchrig run --fresh` job still uses it; the next `down` removes it.
            done.append(f"kept network {network}: a job container still uses it")
    if purge:
        volume = state_volume(session.spec)
        if engine.volume_exists(volume):
            engine.volume_remove(volume, force=True)
            done.append(f"removed volume {volume}")
    return done
