"""The run plan: every `docker run` argument of a workbench, derived from spec and host.

Pure apart from choosing free ports, so it can be golden-tested and exported (compose,
devcontainer) with exactly the arguments `up` uses. Defaults follow SECURITY.md: ports on
127.0.0.1 only, no new privileges, every capability dropped but the few the entrypoint needs
to create the user and then drop to it, a process limit, a stop timeout long enough for a
final checkpoint, memlock and stack limits and a /dev/shm sized for DataLoader and NCCL.
"""

from __future__ import annotations

import os
import pwd
import socket
from dataclasses import dataclass
from pathlib import Path

from torchrig import userfiles
from torchrig.compat.resolve import Resolution
from torchrig.engine.base import GpuSelector, HealthCheck, Mount, Port, RunSpec
from torchrig.errors import HostError, UsageError
from torchrig.host.facts import HostFacts
from torchrig.launch.mounts import (
    bind_mounts,
    checked_mounts,
    hf_cache_env,
    hf_cache_mounts,
    source_env,
)
from torchrig.launch.workspace_access import ROOT_DEFAULT_ID
from torchrig.plan.plan import shm_size
from torchrig.spec.model import Spec
from torchrig.workbench.jupyter_guard import ORIGIN_ENV, published_origins

CONTAINER_PORTS = {"jupyter": 8888, "ssh": 2222, "tensorboard": 6006}
KEYS_IN_CONTAINER = "/run/torchrig/authorized_keys"
# What root needs in the container, and nothing more: the entrypoint chowns torchrig's
# state in the volume (CHOWN; DAC_READ_SEARCH to look into one made with another UID and to
# read a keys file only its host owner may read: read, never write) and drops to the user
# for good (SETUID, SETGID; so does the health check, through setpriv); the init in PID 1
# (root) forwards SIGTERM to the user's processes on stop (KILL). No DAC_OVERRIDE, FOWNER.
CAPABILITIES = ("CHOWN", "DAC_READ_SEARCH", "KILL", "SETGID", "SETUID")
VENV_PYTHON = "/opt/venv/bin/python"


@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Workbench:
    """A run plan plus what a person needs to reach the workbench."""

    run: RunSpec
    identity: Identity
    workspace: Path
    state_volume: str
    ports: dict[str, int]
    keys_file: Path | None


def container_name(spec: Spec) -> str:
    return f"torchrig-{spec.project.name}"


def state_volume(spec: Spec) -> str:
    return f"torchrig-{spec.project.name}-state"


def network_name(spec: Spec) -> str:
    """The workbench's own network: no other container shares a bridge with its services."""
    return f"torchrig-{spec.project.name}-net"


def health_check(who: Identity) -> HealthCheck:
    """The image's check, run as the workbench user from `/`, never as root.

    Docker runs a health check as the image's user (root here) in its WORKDIR; setpriv
    (util-linux, in every workbench image) becomes the user before Python starts, and
    -I keeps the cwd, PYTHON* variables and the user site off sys.path all the same.
    """
    command = (
        f"cd / && exec /usr/bin/setpriv --reuid={who.uid} --regid={who.gid} --clear-groups "
        f"--inh-caps=-all {VENV_PYTHON} -I -m torchrig.workbench.health"
    )
    return HealthCheck(command, interval_s=5, timeout_s=3, retries=3, start_period_s=10)


def identity(spec: Spec, host: HostFacts) -> Identity:
    """The workbench user: the host user's name, UID and GID unless the spec says.

    Run as root, "auto" would be root's ids, and the workbench never runs as root: it gets
    ROOT_DEFAULT_ID, an id no host account has (checked by `up`; see workspace_access),
    never 1000, which is usually a person on the host who would then own the workbench's
    files and its rights on the project.
    """
    # The host's facts decide (uid 0 included: a host file saved as root means root there).
    host_uid = host.system.uid if host.system.uid is not None else os.getuid()
    host_gid = host.system.gid if host.system.gid is not None else os.getgid()
    uid = spec.user.uid if spec.user.uid != "auto" else host_uid
    gid = spec.user.gid if spec.user.gid != "auto" else host_gid
    name = spec.user.name
    if name == "auto":
        name = host.system.user or _login_name()
    if uid == 0 or gid == 0 or name == "root":
        uid = ROOT_DEFAULT_ID if uid == 0 else uid
        gid = ROOT_DEFAULT_ID if gid == 0 else gid
        name = "rig" if name in ("root", "") else name
    assert isinstance(uid, int) and isinstance(gid, int)
    return Identity(name=name, uid=uid, gid=gid)


def _login_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "rig"


def gpu_selector(spec: Spec, resolution: Resolution, host: HostFacts) -> GpuSelector:
    if not resolution.cuda or spec.resources.gpus == "none" or not host.gpus:
        return None
    sel = spec.resources.gpus
    if sel == "all":
        return "all"
    if isinstance(sel, int):
        return sel
    assert isinstance(sel, list)
    return tuple(sel)


def check_gpu_runtime(selector: GpuSelector, engine_name: str, host: HostFacts) -> None:
    """GPUs asked for: the engine must be able to pass them in (toolkit or CDI)."""
    if selector is None:
        return
    facts = host.engine(engine_name)
    cdi = facts.cdi_devices if facts else []
    if engine_name == "docker" and not (facts and facts.nvidia_runtime) and not cdi:
        raise HostError(
            "GPUs are asked for, but Docker has no NVIDIA runtime (could not select device "
            'driver "" with capabilities: [[gpu]])',
            "install nvidia-container-toolkit, run `nvidia-ctk runtime configure "
            '--runtime=docker` and restart docker; or set resources.gpus = "none"',
        )
    if engine_name == "podman" and not cdi:
        raise HostError(
            "GPUs are asked for, but Podman has no CDI spec for nvidia.com/gpu",
            "install nvidia-container-toolkit and run `nvidia-ctk cdi generate --output="
            '/etc/cdi/nvidia.yaml`; or set resources.gpus = "none"',
        )


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # As the engine's proxy binds: connections just closed (TIME_WAIT, e.g. a browser
        # tab of the last session) do not block it, so they must not move the port either.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_ports(spec: Spec, taken: set[int] | None = None) -> dict[str, int]:
    """Host ports on 127.0.0.1: the spec's, or the next free one when it is taken."""
    chosen: dict[str, int] = {}
    used = set(taken or ())
    for service, container_port in CONTAINER_PORTS.items():
        setting = getattr(spec.services, service)
        if not setting.enabled:
            continue
        port = setting.port or container_port
        for candidate in range(port, min(port + 100, 65536)):
            if candidate not in used and port_is_free(candidate):
                chosen[service] = candidate
                used.add(candidate)
                break
        else:
            raise HostError(
                f"no free port on 127.0.0.1 between {port} and {port + 99} for {service}",
                f"free one, or set services.{service}.port to another",
            )
    return chosen


def workbench_run(
    spec: Spec,
    resolution: Resolution,
    host: HostFacts,
    image: str,
    *,
    workspace: Path,
    ports: dict[str, int],
    keys_file: Path | None,
    env_file: Path | None,
) -> Workbench:
    if not workspace.is_dir():
        raise UsageError(
            f"workspace folder {workspace} does not exist", "create it, or pass --workspace DIR"
        )
    who = identity(spec, host)
    volume = state_volume(spec)
    services = [s for s in CONTAINER_PORTS if getattr(spec.services, s).enabled]
    mounts = [
        Mount(source=str(workspace.resolve()), target="/workspace"),
        Mount(source=volume, target=f"/home/{who.name}", kind="volume"),
    ]
    if keys_file is not None:
        mounts.append(Mount(source=str(keys_file), target=KEYS_IN_CONTAINER, read_only=True))
    # The spec's [[mounts]], checked on this machine now (exit 2 naming the entry), and the
    # shared Hugging Face cache volume.
    # The workspace's owner is whose workbench this is: as root, mount only what they may open.
    mounts += bind_mounts(checked_mounts(spec, project=workspace))
    mounts += hf_cache_mounts(spec, who.uid)
    if env_file is not None and not env_file.is_file():
        raise UsageError(f"env file {env_file} does not exist", "create it or drop --env-file")
    memory = spec.resources.memory or None
    run = RunSpec(
        image=image,
        name=container_name(spec),
        hostname=spec.project.name,
        detach=True,
        env={
            "TORCHRIG_USER": who.name,
            "TORCHRIG_UID": str(who.uid),
            "TORCHRIG_GID": str(who.gid),
            "TORCHRIG_SERVICES": ",".join(services),
            "TORCHRIG_AUTHORIZED_KEYS_FILE": KEYS_IN_CONTAINER,
            # The browser origins Jupyter accepts: the URL `up` prints (host port).
            **jupyter_origin(ports),
            **hf_cache_env(spec),
            **source_env(spec),
        },
        env_file=env_file,
        labels={
            "io.torchrig.project": spec.project.name,
            "io.torchrig.workspace": str(workspace.resolve()),
        },
        ports=tuple(
            Port("127.0.0.1", ports[s], CONTAINER_PORTS[s]) for s in services if s in ports
        ),
        mounts=tuple(mounts),
        gpus=gpu_selector(spec, resolution, host),
        shm_size=shm_size(spec, host),
        ulimits={"memlock": -1, "stack": 67108864},
        security_opt=("no-new-privileges:true",),
        cap_drop=("ALL",),
        cap_add=CAPABILITIES,
        pids_limit=spec.resources.pids,
        memory=memory,
        cpus=spec.resources.cpus or None,
        stop_timeout=spec.resources.stop_timeout,
        healthcheck=health_check(who),
        network=network_name(spec),
    )
    return Workbench(
        run=run,
        identity=who,
        workspace=workspace.resolve(),
        state_volume=volume,
        ports=ports,
        keys_file=keys_file,
    )


def jupyter_origin(ports: dict[str, int]) -> dict[str, str]:
    if "jupyter" not in ports:
        return {}
    return {ORIGIN_ENV: ",".join(published_origins(ports["jupyter"]))}


def authorized_keys(spec: Spec, home: Path | None = None, *, project: Path | None = None) -> str:
    """The public keys allowed to log in: the spec's (lines or .pub paths), else ~/.ssh/*.pub.

    The spec's paths are read with the rights of the project's owner (`project`, default
    the current folder): run by root, `authorized_keys = ["/etc/shadow"]` must not copy a
    root-only file into their container. Never a line of the file in an error.
    """
    folder = project or Path.cwd()
    lines: list[str] = []
    for item in spec.user.authorized_keys:
        if item.startswith(("ssh-", "ecdsa-", "sk-")):
            lines.append(item.strip())
            continue
        text = userfiles.read_text(
            userfiles.expand(item, folder),
            folder,
            "user.authorized_keys",
            "give a public key line or the path of a .pub file the project's owner may read",
        )
        lines += [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not spec.user.authorized_keys:
        ssh_dir = (home or Path.home()) / ".ssh"
        for pub in sorted(ssh_dir.glob("*.pub")) if ssh_dir.is_dir() else []:
            lines += [ln.strip() for ln in pub.read_text().splitlines() if ln.strip()]
    return "\n".join(lines) + ("\n" if lines else "")
