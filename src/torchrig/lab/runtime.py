"""What the hub needs to start each user's workbench, as plain data, from the one Plan.

The image, its run facts (capabilities, no-new-privileges, process limit, /dev/shm, ulimits,
stop timeout, health check, the spec's mirrors and cache variables) all come from the Plan
`torchrig up` executes (`plan.run`, `plan.image.tag`, `plan.names`); the lab adds only what
is per user: name, UID, home volume, keys, SSH port, GPUs, memory and CPUs.
"""

from __future__ import annotations

from typing import Any

from torchrig import contract
from torchrig.engine.base import RunSpec
from torchrig.lab.state import LabState
from torchrig.plan.plan import Plan
from torchrig.plan.run import Identity, health_check
from torchrig.spec.lab import Lab
from torchrig.spec.model import parse_size
from torchrig.workbench.jupyter_guard import ORIGIN_ENV

# What the Plan's env holds that is the one workbench's, not the lab's: each user gets theirs.
PER_USER_ENV = frozenset(
    {
        contract.ENV_USER,
        contract.ENV_UID,
        contract.ENV_GID,
        contract.ENV_SERVICES,
        contract.ENV_KEYS_FILE,
        ORIGIN_ENV,
    }
)
NANOSECONDS = 1_000_000_000


def user_volume(container: str, user: str) -> str:
    """The user's home: kept by `lab down`, image upgrades and `remove-user` (not --purge).
    container: the Plan's container name (plan.names.container)."""
    return f"{container}-home-{user}"


def lab_network(plan: Plan) -> str:
    return f"{plan.names.network}-lab"


def host_config(run: RunSpec) -> dict[str, Any]:
    """The Plan's hardening in docker-py's create_host_config terms."""
    ulimits = []
    for name, limit in run.ulimits.items():
        soft, hard = limit if isinstance(limit, tuple) else (limit, limit)
        ulimits.append({"name": name, "soft": soft, "hard": hard})
    return {
        "cap_drop": list(run.cap_drop),
        "cap_add": list(run.cap_add),
        "security_opt": list(run.security_opt),
        "pids_limit": run.pids_limit,
        "shm_size": run.shm_size,
        "ulimits": ulimits,
        "init": False,  # tini is the image's PID 1 already
    }


def healthcheck(run: RunSpec, user: str, uid: int) -> dict[str, Any] | None:
    """The Plan's health check (plan/run.health_check), run as this user, not the Plan's."""
    if run.healthcheck is None:
        return None
    check = health_check(Identity(user, uid, uid))
    return {
        "test": ["CMD-SHELL", check.command],
        "interval": int(check.interval_s * NANOSECONDS),
        "timeout": int(check.timeout_s * NANOSECONDS),
        "retries": check.retries,
        "start_period": int(check.start_period_s * NANOSECONDS),
    }


def lab_runtime(
    plan: Plan,
    lab: Lab,
    state: LabState,
    *,
    gpu_pool: list[str],
    keys: dict[str, bool],
) -> dict[str, Any]:
    """The LAB dict the generated config hands to lab/hooks.py. keys: user -> has keys."""
    run = plan.run
    if not run.image:
        raise ValueError("the plan has no image tag yet: build first")
    return {
        "name": plan.project,
        "image": run.image,
        "network": lab_network(plan),
        "container_prefix": f"{plan.names.container}-u-",
        "env": {k: v for k, v in sorted(run.env.items()) if k not in PER_USER_ENV},
        "host_config": host_config(run),
        "stop_timeout": run.stop_timeout or 120,
        "ssh_ip": lab.ssh_ip,
        "datasets": lab.datasets,
        "keys_in_container": contract.KEYS_FILE,
        "gpu_state": str(state.gpus),
        "gpu_pool": list(gpu_pool),
        "gpu_policy": lab.gpu_policy,
        "users_per_gpu": lab.users_per_gpu,
        "users": {
            u.name: {
                "uid": u.uid,
                "gpus": lab.gpus_of(u),
                "memory": lab.memory_of(u),
                "memory_bytes": parse_size(lab.memory_of(u)),
                "cpus": lab.cpus_of(u),
                "ssh_port": u.ssh_port,
                "keys_file": str(state.keys_file(u.name)) if keys.get(u.name) else "",
                "volume": user_volume(plan.names.container, u.name),
                "healthcheck": healthcheck(run, u.name, u.uid),
            }
            for u in lab.users
        },
    }
