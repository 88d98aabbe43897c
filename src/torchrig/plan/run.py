"""The run spec of a workbench: every `docker run` argument, derived from spec and host facts.

Pure: the caller passes in what this machine says (the workspace folder, the checked mounts,
the host ports chosen, the keys and env files), so the same arguments go to `up`, to
`run --fresh`, into compose.yaml and devcontainer.json and into golden files. Defaults follow
SECURITY.md: ports on 127.0.0.1 only, no new privileges, every capability dropped but the
few the entrypoint needs to create the user and then drop to it, a process limit, a stop
timeout long enough for a final checkpoint, memlock and stack limits and a /dev/shm sized
for DataLoader and NCCL.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from torchrig import contract
from torchrig.compat.resolve import Resolution
from torchrig.engine.base import GpuSelector, HealthCheck, Mount, Port, RunSpec
from torchrig.errors import HostError
from torchrig.host.facts import HostFacts
from torchrig.launch.mounts import (
    CheckedMount,
    bind_mounts,
    hf_cache_env,
    hf_cache_mounts,
    source_env,
)
from torchrig.launch.workspace_access import ROOT_DEFAULT_ID
from torchrig.plan import names
from torchrig.spec.model import Spec
from torchrig.workbench.jupyter_guard import ORIGIN_ENV, published_origins

GIB = 1 << 30
# What root needs in the container, and nothing more: the entrypoint chowns torchrig's
# state in the volume (CHOWN; DAC_READ_SEARCH to look into one made with another UID and to
# read a keys file only its host owner may read: read, never write) and drops to the user
# for good (SETUID, SETGID; so does the health check, through setpriv); the init in PID 1
# (root) forwards SIGTERM to the user's processes on stop (KILL). No DAC_OVERRIDE, FOWNER.
CAPABILITIES = ("CHOWN", "DAC_READ_SEARCH", "KILL", "SETGID", "SETUID")


@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int


def enabled_services(spec: Spec) -> list[str]:
    return [s for s in contract.SERVICES if getattr(spec.services, s).enabled]


def published_services(spec: Spec) -> list[str]:
    """The services whose port `up` publishes: the entrypoint's and the enabled job services
    (serve), which only a job started later listens on."""
    jobs = [s for s in contract.JOB_SERVICES if getattr(spec.services, s).enabled]
    return enabled_services(spec) + jobs


def spec_ports(spec: Spec) -> dict[str, int]:
    """The host ports the spec asks for (each service's default when it names none); `up`
    moves a taken one to the next free port (launch/local.py)."""
    return {
        s: getattr(spec.services, s).port or contract.PORTS[s] for s in published_services(spec)
    }


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


def health_check(who: Identity) -> HealthCheck:
    """The image's check, run as the workbench user from `/`, never as root.

    Docker runs a health check as the image's user (root here) in its WORKDIR; setpriv
    (util-linux, in every workbench image) becomes the user before Python starts, and
    -I keeps the cwd, PYTHON* variables and the user site off sys.path all the same.
    """
    command = (
        f"cd / && exec /usr/bin/setpriv --reuid={who.uid} --regid={who.gid} --clear-groups "
        f"--inh-caps=-all {contract.VENV_PYTHON} -I -m torchrig.workbench.health"
    )
    return HealthCheck(command, interval_s=5, timeout_s=3, retries=3, start_period_s=10)


def identity(spec: Spec, host: HostFacts) -> Identity:
    """The workbench user: the host user's name, UID and GID unless the spec says.

    Run as root, "auto" would be root's ids, and the workbench never runs as root: it gets
    ROOT_DEFAULT_ID, an id no host account has (checked by `up`; see workspace_access),
    never 1000, which is usually a person on the host who would then own the workbench's
    files and its rights on the project.
    """
    # The host's facts decide (uid 0 included: a host file saved as root means root there);
    # this process's ids only when the facts have none.
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


def gpu_flag(spec: Spec, resolution: Resolution) -> str:
    """The GPUs asked for, as `plan` shows them ("all", "count=2", "device=0,1", "none")."""
    if not resolution.cuda or spec.resources.gpus == "none":
        return "none"
    sel = spec.resources.gpus
    if sel == "all":
        return "all"
    if isinstance(sel, int):
        return f"count={sel}"
    return "device=" + ",".join(sel) if isinstance(sel, list) else str(sel)


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


def jupyter_origin(ports: dict[str, int]) -> dict[str, str]:
    if "jupyter" not in ports:
        return {}
    return {ORIGIN_ENV: ",".join(published_origins(ports["jupyter"]))}


def run_spec(
    spec: Spec,
    resolution: Resolution,
    host: HostFacts,
    image: str,
    *,
    workspace: Path,
    ports: dict[str, int],
    keys_file: Path | None,
    env_file: Path | None,
    mounts: list[CheckedMount],
) -> RunSpec:
    """workspace: the absolute folder mounted at /workspace; mounts: the spec's [[mounts]]
    as checked on this machine (launch/mounts.checked_mounts)."""
    who = identity(spec, host)
    services = enabled_services(spec)
    volumes = [
        Mount(source=str(workspace), target=contract.WORKSPACE),
        Mount(source=names.state_volume(spec), target=f"/home/{who.name}", kind="volume"),
    ]
    if keys_file is not None:
        volumes.append(Mount(source=str(keys_file), target=contract.KEYS_FILE, read_only=True))
    volumes += bind_mounts(mounts)
    volumes += hf_cache_mounts(spec, who.uid)
    return RunSpec(
        image=image,
        name=names.container_name(spec),
        hostname=spec.project.name,
        detach=True,
        env={
            contract.ENV_USER: who.name,
            contract.ENV_UID: str(who.uid),
            contract.ENV_GID: str(who.gid),
            contract.ENV_SERVICES: ",".join(services),
            contract.ENV_KEYS_FILE: contract.KEYS_FILE,
            # The browser origins Jupyter accepts: the URL `up` prints (host port).
            **jupyter_origin(ports),
            **hf_cache_env(spec),
            **source_env(spec),
        },
        env_file=env_file,
        labels={names.PROJECT_LABEL: spec.project.name, names.WORKSPACE_LABEL: str(workspace)},
        ports=tuple(
            Port("127.0.0.1", ports[s], contract.PORTS[s])
            for s in published_services(spec)
            if s in ports
        ),
        mounts=tuple(volumes),
        gpus=gpu_selector(spec, resolution, host),
        shm_size=shm_size(spec, host),
        ulimits=dict(contract.ULIMITS),
        security_opt=("no-new-privileges:true",),
        cap_drop=("ALL",),
        cap_add=CAPABILITIES,
        pids_limit=spec.resources.pids,
        memory=spec.resources.memory or None,
        cpus=spec.resources.cpus or None,
        stop_timeout=spec.resources.stop_timeout,
        healthcheck=health_check(who),
        network=names.network_name(spec),
    )
