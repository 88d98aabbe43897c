"""`torchrig lab up|down|status`: the lab's whole life, over the Plan, Docker and the hub.

up: check everything first (users' GPUs against this host, ports, files the root hub would
read), then build the one image (the same plan and lock as `torchrig up`), make the lab
network (no traffic between users' containers), the users' home volumes and keys, render
jupyterhub_config.py, and (re)start the hub. Bad input changes nothing.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torchrig
from torchrig.command import run_command
from torchrig.engine.base import Progress
from torchrig.errors import HostError, ToolError, UsageError
from torchrig.freeport import port_is_free
from torchrig.host.facts import HostFacts
from torchrig.lab import hub, runtime
from torchrig.lab.gpus import read_pool
from torchrig.lab.render import HubAddresses, render_config
from torchrig.lab.state import LabState, check_trusted, lab_state, write_private
from torchrig.launch.session import Session
from torchrig.lock.lockfile import LockFile
from torchrig.plan.plan import Plan
from torchrig.plan.run import check_gpu_runtime
from torchrig.spec.lab import Lab
from torchrig.spec.model import Spec

JUPYTERHUB_PACKAGE = "jupyterhub"
LAB_LABEL = "io.torchrig.lab"
USER_LABEL = "io.torchrig.lab.user"
PROXY = "configurable-http-proxy"


@dataclass
class LabUp:
    url: str
    image: str
    users: list[str]
    passwords: dict[str, str] = field(default_factory=dict)
    seconds_to_ready: float = 0.0
    restarted: bool = False


def lab_of(spec: Spec) -> Lab:
    if spec.lab is None:
        raise UsageError("torchrig.toml has no [lab] section", "run `torchrig lab init` to add one")
    return spec.lab


def hub_url(lab: Lab) -> str:
    scheme = "https" if lab.tls_cert else "http"
    host = "127.0.0.1" if lab.hub_ip == "0.0.0.0" else lab.hub_ip
    return f"{scheme}://{host}:{lab.hub_port}"


def gpu_pool(host: HostFacts) -> list[str]:
    """The GPUs the lab hands out, by UUID (an index changes when a card is replaced)."""
    return [g.uuid or str(g.index) for g in host.gpus if not g.mig]


def check_gpus(lab: Lab, host: HostFacts) -> list[str]:
    pool = gpu_pool(host)
    for user in lab.users:
        wanted = lab.gpus_of(user)
        if wanted > len(pool):
            raise UsageError(
                f"lab user {user.name} is allowed {wanted} GPUs but this host has {len(pool)}",
                f"lower users.gpus of {user.name} (or lab.gpus) to at most {len(pool)}",
            )
    return pool


def port_taken(ip: str, port: int) -> bool:
    return not port_is_free(port, ip)


def check_ports(lab: Lab) -> None:
    for ip, port, key in (
        (lab.hub_ip, lab.hub_port, "hub_port"),
        ("127.0.0.1", lab.proxy_api_port, "proxy_api_port"),
    ):
        if port_taken(ip, port):
            raise UsageError(
                f"port {port} on {ip} is taken by another program: the lab's {key} needs it",
                f"stop that program, or set lab.{key} to a free port",
            )
    for user in lab.users:
        if port_taken(lab.ssh_ip, user.ssh_port) and not _lab_container_publishes(user.ssh_port):
            raise UsageError(
                f"port {user.ssh_port} on {lab.ssh_ip} (ssh of lab user {user.name}) is taken",
                f"give {user.name} another ssh_port in torchrig.toml",
            )


def _lab_container_publishes(port: int) -> bool:
    done = run_command(["docker", "ps", "--filter", f"publish={port}", "-q"], 30)
    return bool(done.stdout.strip())


def check_files(session: Session, lab: Lab, state: LabState) -> None:
    """SECURITY.md: the root hub reads nothing a user can write (lab/state.py)."""
    check_trusted(session.spec_path, "torchrig.toml")
    check_trusted(state.root.parent, "the state folder")
    check_trusted(Path(torchrig.__file__).parent, "torchrig's code")
    import dockerspawner  # type: ignore[import-untyped]
    import jupyterhub

    # What the root hub imports and runs: its packages, the interpreter, the proxy.
    check_trusted(Path(jupyterhub.__file__).parent, "JupyterHub's code")
    check_trusted(Path(dockerspawner.__file__).parent, "DockerSpawner's code")
    check_trusted(Path(sys.executable), "the hub's Python")
    for path, what in ((lab.tls_cert, "lab.tls_cert"), (lab.tls_key, "lab.tls_key")):
        if path:
            if not Path(path).is_file():
                raise UsageError(f"{what} {path} does not exist", "give the PEM file's path")
            check_trusted(Path(path), what)
    if lab.datasets and not Path(lab.datasets).is_dir():
        raise UsageError(
            f"lab.datasets {lab.datasets} is not a folder", 'create it, or set datasets = ""'
        )


def check_image_has_hub(lock: LockFile, variant: str) -> None:
    target = lock.target(variant)
    found = next(
        (p.version for p in (target.packages if target else []) if p.name == JUPYTERHUB_PACKAGE),
        None,
    )
    if found is None:
        raise UsageError(
            "the lab image needs jupyterhub (its single-user server) but torchrig.lock has none",
            "run `torchrig lab init` (it adds jupyterhub to [python] packages), then "
            "`torchrig lock`",
        )
    import jupyterhub

    if found.split(".")[:1] != jupyterhub.__version__.split(".")[:1]:
        raise UsageError(
            f"the image has jupyterhub {found} but the hub is {jupyterhub.__version__}",
            f'pin "jupyterhub=={jupyterhub.__version__}" in [python] packages and lock again',
        )


def proxy_path() -> str:
    import shutil

    found = shutil.which(PROXY)
    if found is None:
        raise HostError(
            f"{PROXY} is not installed (the hub's proxy)",
            f"npm install -g {PROXY} (.ci/install-engines.sh does)",
        )
    return found


def docker(*args: str, timeout: float = 120) -> str:
    done = run_command(["docker", *args], timeout)
    if done.returncode != 0:
        raise ToolError(f"docker {' '.join(args[:3])} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def ensure_network(name: str, lab_name: str) -> str:
    """The lab's bridge, where containers reach the hub and nothing else of each other
    (enable_icc=false); returns its gateway, the host's address on it."""
    listed = run_command(["docker", "network", "inspect", name], 30)
    if listed.returncode != 0:
        docker(
            "network", "create", "--driver", "bridge",
            "--opt", "com.docker.network.bridge.enable_icc=false",
            "--label", f"{LAB_LABEL}={lab_name}", name,
        )  # fmt: skip
        listed = run_command(["docker", "network", "inspect", name], 30)
    info = json.loads(listed.stdout)[0]
    configs = (info.get("IPAM") or {}).get("Config") or []
    gateway = next((c.get("Gateway") for c in configs if c.get("Gateway")), None)
    if not gateway:
        raise ToolError(f"docker network {name} has no gateway address")
    return str(gateway)


def ensure_volume(name: str, lab_name: str, user: str) -> None:
    if run_command(["docker", "volume", "inspect", name], 30).returncode != 0:
        docker(
            "volume", "create", "--label", f"{LAB_LABEL}={lab_name}",
            "--label", f"{USER_LABEL}={user}", name,
        )  # fmt: skip


def rlimits_allowed(image: str, the_plan: Plan) -> bool:
    """Can a container of this host raise the Plan's ulimits (CAP_SYS_RESOURCE upstream)?"""
    argv = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/true"]
    for name, limit in the_plan.run.ulimits.items():
        soft, hard = limit if isinstance(limit, tuple) else (limit, limit)
        argv += ["--ulimit", f"{name}={soft}:{hard}"]
    done = run_command([*argv, image], 120)
    if done.returncode == 0:
        return True
    if "rlimit" in done.stderr.lower():
        return False
    raise ToolError(f"docker cannot start the lab image {image}: {done.stderr.strip()[-300:]}")


def write_keys(lab: Lab, state: LabState) -> dict[str, bool]:
    have: dict[str, bool] = {}
    for user in lab.users:
        path = state.keys_file(user.name)
        if user.ssh_keys:
            write_private(path, "\n".join(user.ssh_keys) + "\n")
        else:
            path.unlink(missing_ok=True)
        have[user.name] = bool(user.ssh_keys)
    for stale in state.keys.iterdir():
        if lab.user(stale.name) is None:
            stale.unlink()
    return have


def lab_up(
    session: Session,
    engine_name: str | None,
    progress: Progress,
) -> LabUp:
    """Every check on the input first (exit 2, nothing made), then build and start."""
    from torchrig.lab import passwords
    from torchrig.launch.session import engine_for
    from torchrig.launch.up import build as build_image

    spec = session.spec
    lab = lab_of(spec)
    if engine_name not in (None, "docker"):
        raise UsageError("the lab runs on Docker (DockerSpawner)", "use --engine docker")
    state = lab_state(spec.project.name)
    pool = check_gpus(lab, session.host)
    running = hub.hub_pid(state)
    if running is None:
        check_ports(lab)
    check_files(session, lab, state)
    proxy = proxy_path()
    check_trusted(Path(proxy), "configurable-http-proxy")
    engine = engine_for(session, "docker")
    if pool and any(lab.gpus_of(u) for u in lab.users):
        check_gpu_runtime("all", engine.name, session.host)
    built = build_image(session, engine, progress)
    the_plan: Plan = built.plan
    lock = session.lock()
    if lock is None:
        raise UsageError("torchrig.lock is missing after the build", "run `torchrig lock`")
    check_image_has_hub(lock, session.resolution.variant)
    state.make()
    gateway = ensure_network(runtime.lab_network(the_plan), spec.project.name)
    for user in lab.users:
        ensure_volume(
            runtime.user_volume(the_plan.names.container, user.name), spec.project.name, user.name
        )
    keys = write_keys(lab, state)
    data = runtime.lab_runtime(the_plan, lab, state, gpu_pool=pool, keys=keys)
    if data["host_config"]["ulimits"] and not rlimits_allowed(the_plan.run.image, the_plan):
        # As `up` does (launch/up.run_with_fallback), said once here for every user.
        progress(
            "this host does not let containers raise memlock/stack limits: users' servers run "
            "without them (NCCL over RDMA may fail with 'ibv_reg_mr failed')"
        )
        data["host_config"]["ulimits"] = []
    state.secret(state.service_token)
    state.secret(state.proxy_token)
    if state.cookie_secret.exists():
        state.cookie_secret.chmod(0o600)
    at = HubAddresses(gateway=gateway, python=sys.executable, proxy=proxy)
    write_private(state.config, render_config(lab, data, state, at))
    if running is not None:
        progress("restarting the hub with the new configuration (users' servers keep running)")
        hub.stop_hub(state)
        check_ports(lab)
    progress(f"starting JupyterHub on {hub_url(lab)}")
    pid = hub.start_hub(state)
    seconds = hub.wait_ready(hub_url(lab), pid, state.log)
    made: dict[str, str] = {}
    if lab.auth == "native":
        made = passwords.first_passwords(state.database, [u.name for u in lab.users])
    return LabUp(
        url=hub_url(lab),
        image=the_plan.run.image,
        users=[u.name for u in lab.users],
        passwords=made,
        seconds_to_ready=seconds,
        restarted=running is not None,
    )


def user_containers(lab_name: str) -> list[dict[str, Any]]:
    try:
        listed = run_command(
            ["docker", "ps", "-a", "--filter", f"label={LAB_LABEL}={lab_name}", "-q"], 30
        )
    except OSError:  # no Docker here (status with --host FILE on a laptop)
        return []
    out = listed.stdout.split()
    if not out:
        return []
    found = json.loads(docker("inspect", *out))
    return [c for c in found if isinstance(c, dict)]


def lab_down(spec: Spec, progress: Progress) -> dict[str, Any]:
    """Stop the hub and every user's server; homes, keys and the hub's database stay."""
    lab_of(spec)
    state = lab_state(spec.project.name)
    was_running = hub.stop_hub(state)
    containers = user_containers(spec.project.name)
    names = [str(c.get("Name", "")).lstrip("/") for c in containers]
    if names:
        progress(f"stopping {len(names)} user server(s): {', '.join(names)}")
        run_command(["docker", "rm", "-f", *names], 180)
    if state.gpus.exists():
        state.gpus.unlink()
    return {"hub_was_running": was_running, "servers_stopped": names}


def nvml_utilisation() -> dict[str, int]:
    """GPU UUID -> utilisation % from NVML; empty where there is no NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return {}
    found: dict[str, int] = {}
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            found[uuid] = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:
        return found
    finally:
        pynvml.nvmlShutdown()
    return found


def lab_status(spec: Spec, host: HostFacts) -> dict[str, Any]:
    lab = lab_of(spec)
    state = lab_state(spec.project.name)
    pid = hub.hub_pid(state)
    servers = {
        str((c.get("Config") or {}).get("Labels", {}).get(USER_LABEL, "")): c
        for c in user_containers(spec.project.name)
    }
    pool = read_pool(state.gpus, gpu_pool(host))
    usage = nvml_utilisation()
    users = []
    for user in lab.users:
        box = servers.get(user.name)
        box_state = (box or {}).get("State") or {}
        users.append(
            {
                "name": user.name,
                "uid": user.uid,
                "server": box_state.get("Status", "stopped") if box else "stopped",
                "since": box_state.get("StartedAt") if box else None,
                "ssh": f"ssh -p {user.ssh_port} {user.name}@{lab.ssh_ip}",
                "gpus_allowed": lab.gpus_of(user),
                "memory": lab.memory_of(user),
                "cpus": lab.cpus_of(user),
            }
        )
    gpus = []
    for uuid in pool.gpus:
        holders = pool.holders.get(uuid, [])
        gpus.append(
            {
                "gpu": uuid,
                "holders": [{"user": h.user, "since": _iso(h.since)} for h in holders],
                "utilisation_pct": usage.get(uuid),
            }
        )
    return {
        "lab": spec.project.name,
        "hub": "running" if pid else "stopped",
        "url": hub_url(lab),
        "gpu_policy": lab.gpu_policy,
        "users": users,
        "gpus": gpus,
        "queue": [{"user": u, "gpus": n} for u, n, _ in pool.queue],
    }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def remove_user(session: Session, name: str, *, purge: bool, progress: Progress) -> dict[str, Any]:
    """Stop the user's server and forget them; the new spec text is returned for the CLI to
    write. Their home volume stays unless purge."""
    from torchrig.lab import passwords
    from torchrig.lab.gpus import locked_pool, release
    from torchrig.lab.users import remove_user_text
    from torchrig.plan.names import container_name

    spec = session.spec
    text = remove_user_text(session.spec_path.read_text(), session.spec_path, name)
    state = lab_state(spec.project.name)
    for box in user_containers(spec.project.name):
        if (box.get("Config") or {}).get("Labels", {}).get(USER_LABEL) == name:
            progress(f"stopping {name}'s server")
            run_command(["docker", "rm", "-f", str(box.get("Id"))], 120)
    if state.gpus.exists():
        with locked_pool(state.gpus, gpu_pool(session.host)) as pool:
            release(pool, name)
            pool.queue = [q for q in pool.queue if q[0] != name]
    state.keys_file(name).unlink(missing_ok=True)
    passwords.forget(state.database, name)
    volume = runtime.user_volume(container_name(spec), name)
    if purge:
        run_command(["docker", "volume", "rm", "-f", volume], 120)
    return {"user": name, "volume": volume, "purged": purge, "text": text}
