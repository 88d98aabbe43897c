"""Facts about a running workbench read from the engine, not derived again from the spec.

The verbs that reach a workbench (exec, shell, jobs, stop, status) act as the user it was
started with: the spec or the host may have changed since (a new user.uid, root now
running torchrig), and the container's own environment is what holds.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torchrig import contract
from torchrig.engine.base import Engine, ports_from_inspect
from torchrig.errors import ToolError
from torchrig.launch.up import TOKEN_FILE, passes_now


def container_env(info: Mapping[str, Any]) -> dict[str, str]:
    config = info.get("Config") or {}
    return dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)


def container_user(info: Mapping[str, Any]) -> str:
    """The workbench user as "uid:gid", from the TORCHRIG_UID/GID the container runs with."""
    env = container_env(info)
    uid, gid = env.get(contract.ENV_UID, ""), env.get(contract.ENV_GID, "")
    if not (uid.isdigit() and gid.isdigit()) or "0" in (uid, gid):
        name = str(info.get("Name") or "the container").lstrip("/")
        raise ToolError(
            f"{name} has no workbench user (TORCHRIG_UID/TORCHRIG_GID): torchrig did not start it",
            "recreate it with `torchrig up`",
        )
    return f"{uid}:{gid}"


# The services' ports inside the container, as the image publishes them.
SERVICE_PORTS = contract.PORTS


@dataclass(frozen=True)
class WorkbenchStatus:
    """What `torchrig status` shows: read from the engine and the container, never planned."""

    name: str
    state: str  # "absent", "running", "exited", …
    health: str = ""
    started_at: str = ""
    uptime_s: int | None = None
    image: str = ""
    user: str = ""
    ports: dict[str, str] = field(default_factory=dict)  # service → "127.0.0.1:18888"
    jupyter_url: str = ""
    ssh_command: str = ""
    gpus: list[str] = field(default_factory=list)
    workspace: str = ""
    workspace_free_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)


def uptime_seconds(started_at: str, now: datetime.datetime) -> int | None:
    """Seconds since the engine's StartedAt (RFC 3339, nanoseconds and all)."""
    text = started_at.strip()
    if not text or text.startswith("0001-"):
        return None
    # Engines print nanoseconds; datetime takes at most microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        started = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=datetime.UTC)
    return max(0, int((now - started).total_seconds()))


def published(info: Mapping[str, Any]) -> dict[str, str]:
    bound = ports_from_inspect(info)
    found = {}
    for service, container_port in SERVICE_PORTS.items():
        pairs = bound.get(f"{container_port}/tcp") or []
        if pairs:
            ip, port = pairs[0]
            found[service] = f"{ip or '0.0.0.0'}:{port}"
    return found


def health_command(info: Mapping[str, Any]) -> str:
    """The shell command of the container's health check, as the engine recorded it."""
    config = info.get("Config") or {}
    test = (config.get("Healthcheck") or config.get("HealthCheck") or {}).get("Test") or []
    if len(test) == 2 and test[0] == "CMD-SHELL":
        return str(test[1])
    return ""


def workbench_status(
    engine: Engine, name: str, now: datetime.datetime | None = None
) -> WorkbenchStatus:
    info = engine.inspect(name)
    if info is None:
        return WorkbenchStatus(name=name, state="absent")
    state = info.get("State") or {}
    running = bool(state.get("Running"))
    # Podman without systemd runs the check in health(): its output is in a new inspect.
    health = engine.health(name) if running else ""
    info = engine.inspect(name) or info
    check = health_command(info)
    if running and health == "starting" and check and passes_now(engine, name, check, 10):
        health = "healthy"  # as `up` said: the engine has not run its first check yet
    env = container_env(info)
    ports = published(info)
    user = env.get(contract.ENV_USER, "")
    jupyter_url = ssh_command = ""
    gpus: list[str] = []
    if running:
        who = container_user(info)
        if "jupyter" in ports:
            token = engine.exec(name, ["cat", f"/home/{user}/{TOKEN_FILE}"], user=who)
            if token.returncode == 0 and token.stdout.strip():
                jupyter_url = f"http://{ports['jupyter']}/lab?token={token.stdout.strip()}"
        listed = engine.exec(
            name, ["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader"], user=who
        )
        if listed.returncode == 0:
            gpus = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    if "ssh" in ports:
        ip, port = ports["ssh"].rsplit(":", 1)
        ssh_command = f"ssh -p {port} {user}@{ip}"
    mounts = {m.get("Destination"): m for m in info.get("Mounts") or []}
    workspace = str((mounts.get("/workspace") or {}).get("Source") or "")
    free = None
    if workspace:
        try:
            free = shutil.disk_usage(workspace).free
        except OSError:
            free = None
    return WorkbenchStatus(
        name=name,
        state=str(state.get("Status") or "unknown"),
        health=health,
        started_at=str(state.get("StartedAt") or ""),
        uptime_s=uptime_seconds(str(state.get("StartedAt") or ""), now or _now())
        if running
        else None,
        image=str((info.get("Config") or {}).get("Image") or ""),
        user=user,
        ports=ports,
        jupyter_url=jupyter_url,
        ssh_command=ssh_command,
        gpus=gpus,
        workspace=workspace,
        workspace_free_bytes=free,
        warnings=health_warnings(info),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def health_warnings(info: Mapping[str, Any]) -> list[str]:
    """The low-disk lines of the newest health check (health.py prints them; a workbench
    with low disk stays healthy, so this is where it shows)."""
    from torchrig.workbench.disk import PREFIX

    state = info.get("State") or {}
    # Docker says "Health"; Podman 4 says "Healthcheck" (and later both).
    log = (state.get("Health") or state.get("Healthcheck") or {}).get("Log") or []
    if not log:
        return []
    output = str((log[-1] or {}).get("Output") or "")
    return [
        "low disk: " + line.removeprefix(PREFIX)
        for line in output.splitlines()
        if line.startswith(PREFIX)
    ]
