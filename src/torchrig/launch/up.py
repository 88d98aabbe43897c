"""Bring a workbench up (lock if needed, build if needed, run, wait until healthy) and down."""

from __future__ import annotations

import os
import pwd
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torchrig import userfiles
from torchrig.engine.base import Engine, Progress
from torchrig.errors import HostError, ToolError, UsageError
from torchrig.fsutil import write_atomically
from torchrig.image.build import BuildResult, build_image, locked_target
from torchrig.launch import workspace_access
from torchrig.launch.envfile import check_env_file
from torchrig.launch.runplan import (
    Identity,
    Workbench,
    authorized_keys,
    check_gpu_runtime,
    choose_ports,
    container_name,
    gpu_selector,
    identity,
    network_name,
    workbench_run,
)
from torchrig.launch.session import Addressed, Session, base_image
from torchrig.lock.lockfile import LockFile, render_lock
from torchrig.lock.make import make_lock
from torchrig.spec.model import Spec

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


def state_dir(project: str) -> Path:
    root = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    folder = Path(root) / "torchrig" / project
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
    return lock


def build(
    session: Session, engine: Engine, progress: Progress, *, no_cache: bool = False
) -> BuildResult:
    lock = ensure_lock(session, progress)
    target = locked_target(session.spec, session.compat, lock, session.resolution.variant)
    base, components = base_image(session, engine, progress)
    result = build_image(
        session.spec,
        session.digest,
        session.resolution,
        target,
        base,
        components,
        engine,
        no_cache=no_cache,
        progress=progress,
        project=session.project_dir,
        tools=workbench_tools(session),
    )
    # Exports (compose, devcontainer) name the image the last build made.
    write_atomically(state_dir(session.spec.project.name) / "image", result.tag + "\n")
    return result


def workbench_tools(session: Session) -> tuple[str, ...]:
    """tmux, editors and htop for the "workbench" stack, as its base distribution has them."""
    dist = session.distribution()
    if session.spec.python.stack != "workbench" or dist is None:
        return ()
    return tuple(dist.tools)


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
    spec, host = session.spec, session.host
    workspace = workspace or session.project_dir
    selector = gpu_selector(spec, session.resolution, host)
    check_gpu_runtime(selector, engine.name, host)
    env_file = stage_env_file(session, env_file)
    keys = authorized_keys(spec, project=session.project_dir)
    if spec.services.ssh.enabled and not keys:
        progress("no SSH public key found (~/.ssh/*.pub or user.authorized_keys): ssh login is off")
    keys_file = state_dir(spec.project.name) / "authorized_keys"
    write_atomically(keys_file, keys)
    # Fail on bad input before any build: a planned run with placeholder ports checks it all.
    workbench_run(
        spec,
        session.resolution,
        host,
        "check",
        workspace=workspace,
        ports={},
        keys_file=keys_file,
        env_file=env_file,
    )
    who = identity(spec, host)
    needs_access = check_workspace_access(workspace.resolve(), spec, who)
    result = build(session, engine, progress)
    if needs_access:
        give_workspace_access(workspace.resolve(), spec, who, progress)
    name = container_name(spec)
    existing = engine.inspect(name)
    if existing is not None:
        running = (existing.get("State") or {}).get("Running")
        if (
            running
            and existing.get("Config", {}).get("Image") == result.tag
            and not _other_user(existing, who)
        ):
            progress(f"{name} is already up with {result.tag}")
            # Its URLs only once it answers, as after a fresh start (it may be restarting).
            wait_healthy(engine, name)
            return _describe(engine, name, result, session, time.perf_counter(), recreated=False)
        progress(f"replacing {name} (its state volume is kept)")
        engine.remove(name, force=True)
    wb = workbench_run(
        spec,
        session.resolution,
        host,
        result.tag,
        workspace=workspace,
        ports=choose_ports(spec),
        keys_file=keys_file,
        env_file=env_file,
    )
    volume_is_new = not engine.volume_exists(wb.state_volume)
    if volume_is_new:
        engine.volume_create(wb.state_volume, labels={"io.torchrig.project": spec.project.name})
    network_is_new = ensure_network(engine, wb)
    start = time.perf_counter()
    try:
        run_with_fallback(engine, wb, progress)
        wait_healthy(engine, name)
    except BaseException:
        # Nothing half-built: the container goes, and the volume and network too if this
        # run made them.
        engine.remove(name, force=True)
        if volume_is_new:
            engine.volume_remove(wb.state_volume, force=True)
        if network_is_new and wb.run.network:
            engine.network_remove(wb.run.network)
        raise
    return _describe(engine, name, result, session, start, recreated=True, workbench=wb)


def _other_user(container: dict[str, Any], who: Identity) -> bool:
    """A workbench started for another UID (e.g. 1000, torchrig's old default as root):
    recreated, so `exec` and jobs (which use `identity`) find the user they expect."""
    env = (container.get("Config") or {}).get("Env") or []
    uids = [e.split("=", 1)[1] for e in env if e.startswith("TORCHRIG_UID=")]
    return bool(uids) and uids[0] != str(who.uid)


def ensure_network(engine: Engine, wb: Workbench) -> bool:
    """The workbench's own network (no other container on its bridge); True if made now."""
    network = wb.run.network
    if not network or not engine.bridge_networks or engine.network_exists(network):
        return False
    engine.network_create(
        network, labels={"io.torchrig.project": wb.run.labels.get("io.torchrig.project", "")}
    )
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


def run_with_fallback(engine: Engine, wb: Workbench, progress: Progress) -> None:
    """Run; if this host forbids raising rlimits (no CAP_SYS_RESOURCE for the daemon, or
    rootful Podman 4 refusing any --ulimit), run without them and say what that costs."""
    try:
        engine.run(wb.run)
    except ToolError as exc:
        if "rlimit" not in str(exc).lower() or not wb.run.ulimits:
            raise
        progress(
            "this host does not let containers raise memlock/stack limits: running without "
            "them (NCCL over RDMA may fail with 'ibv_reg_mr failed: Cannot allocate memory')"
        )
        engine.remove(wb.run.name or "", force=True)
        engine.run(replace(wb.run, ulimits={}))


def wait_healthy(engine: Engine, name: str, timeout: float = HEALTHY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = engine.inspect(name)
        if info is None:
            raise ToolError(f"{name} disappeared while starting", "see `torchrig logs`")
        state = info.get("State") or {}
        health = engine.health(name)
        if health == "healthy":
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


def _describe(
    engine: Engine,
    name: str,
    result: BuildResult,
    session: Session,
    start: float,
    *,
    recreated: bool,
    workbench: Workbench | None = None,
) -> Running:
    info = engine.inspect(name) or {}
    env = dict(e.split("=", 1) for e in info.get("Config", {}).get("Env", []) if "=" in e)
    user = env.get("TORCHRIG_USER", "")
    uid, gid = int(env.get("TORCHRIG_UID", "0")), int(env.get("TORCHRIG_GID", "0"))
    ports = {}
    for service, container_port in (("jupyter", 8888), ("ssh", 2222), ("tensorboard", 6006)):
        bound = engine.port(name).get(f"{container_port}/tcp") or []
        if bound:
            ports[service] = bound[0][1]
    token = ""
    if "jupyter" in ports:
        done = engine.exec(name, ["cat", f"/home/{user}/{TOKEN_FILE}"], user=f"{uid}:{gid}")
        if done.returncode != 0:
            raise HostError(f"could not read the Jupyter token in {name}", "see `torchrig logs`")
        token = done.stdout.strip()
    mounts = {m.get("Destination"): m for m in info.get("Mounts", [])}
    workspace = (mounts.get("/workspace") or {}).get("Source", "")
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
        from torchrig.launch.runplan import state_volume

        volume = state_volume(session.spec)
        if engine.volume_exists(volume):
            engine.volume_remove(volume, force=True)
            done.append(f"removed volume {volume}")
    return done
