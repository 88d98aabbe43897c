"""Run inside JupyterHub (the generated jupyterhub_config.py binds them): per-user container
settings and the GPU pool, on DockerSpawner's own pre-spawn and post-stop hooks.

DockerSpawner does everything else (create, start, stop, remove, publish, limits), so the
lab needs no spawner of its own: what it lacks is per-user UID/keys/ports/limits and a GPU
pool shared by every spawn, which its documented hooks and per-instance traits take.

`lab` is the LabRuntime dict rendered into the config (lab/runtime.py): plain data written by
torchrig as root into a root-only folder; nothing here reads a file a user can write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchrig.lab.gpus import NoGpuFree, allocate, locked_pool, now, release

SSH_IN_CONTAINER = 2222


class NotALabUser(Exception):
    pass


def container_settings(lab: dict[str, Any], name: str, gpus: list[str]) -> dict[str, Any]:
    """Every per-user DockerSpawner setting, as plain data (unit-tested without a hub)."""
    user = lab["users"].get(name)
    if user is None:
        raise NotALabUser(f"{name} is not a user of this lab: ask its admin to add you")
    services = "jupyter,ssh" if user["keys_file"] else "jupyter"
    env = {
        **lab["env"],
        "TORCHRIG_USER": name,
        "TORCHRIG_UID": str(user["uid"]),
        "TORCHRIG_GID": str(user["uid"]),
        "TORCHRIG_SERVICES": services,
        "TORCHRIG_AUTHORIZED_KEYS_FILE": lab["keys_in_container"],
    }
    if not gpus:
        # The image's NVIDIA_VISIBLE_DEVICES=all must not open every card to a user with none.
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
    volumes: dict[str, Any] = {user["volume"]: {"bind": f"/home/{name}", "mode": "rw"}}
    if user["keys_file"]:
        volumes[user["keys_file"]] = {"bind": lab["keys_in_container"], "mode": "ro"}
    if lab["datasets"]:
        volumes[lab["datasets"]] = {"bind": "/datasets", "mode": "ro"}
    host_config: dict[str, Any] = {
        **lab["host_config"],
        "port_bindings": {SSH_IN_CONTAINER: (lab["ssh_ip"], user["ssh_port"])},
    }
    if gpus:
        host_config["device_requests"] = [
            {"driver": "nvidia", "device_ids": gpus, "capabilities": [["gpu"]]}
        ]
    return {
        "environment": env,
        "volumes": volumes,
        "mem_limit": int(user["memory_bytes"]),
        "cpu_limit": float(user["cpus"]),
        "extra_host_config": host_config,
        "extra_create_kwargs": {
            "ports": {f"{SSH_IN_CONTAINER}/tcp": None},
            "labels": {"io.torchrig.lab": lab["name"], "io.torchrig.lab.user": name},
            "hostname": name,
            "stop_signal": "SIGTERM",
            "stop_timeout": int(lab["stop_timeout"]),
            **({"healthcheck": user["healthcheck"]} if user.get("healthcheck") else {}),
        },
    }


def take_gpus(lab: dict[str, Any], name: str) -> list[str]:
    count = int(lab["users"][name]["gpus"]) if name in lab["users"] else 0
    refused: NoGpuFree | None = None
    # The queue place is saved even when refused: the block must end without an exception.
    with locked_pool(Path(lab["gpu_state"]), list(lab["gpu_pool"])) as pool:
        try:
            return allocate(pool, name, count, lab["gpu_policy"], int(lab["users_per_gpu"]), now())
        except NoGpuFree as exc:
            refused = exc
    assert refused is not None
    raise refused


def give_back_gpus(lab: dict[str, Any], name: str) -> list[str]:
    with locked_pool(Path(lab["gpu_state"]), list(lab["gpu_pool"])) as pool:
        return release(pool, name)


def refusal(status: int, message: str) -> Exception:
    """An HTTP error whose one line the user sees: in the REST API's JSON and on the hub's
    spawn page (JupyterHub shows `jupyterhub_message`), instead of "Internal Server Error"."""
    from tornado import web

    error = web.HTTPError(status, message.replace("%", "%%"))
    error.jupyterhub_message = message  # type: ignore[attr-defined]
    return error


def pre_spawn(lab: dict[str, Any], spawner: Any) -> None:
    name = spawner.user.name
    if name not in lab["users"]:
        raise refusal(403, f"{name} is not a user of this lab: ask its admin to add you")
    try:
        gpus = take_gpus(lab, name)
    except NoGpuFree as exc:
        raise refusal(503, str(exc)) from None
    try:
        for key, value in container_settings(lab, name, gpus).items():
            setattr(spawner, key, value)
    except BaseException:
        give_back_gpus(lab, name)
        raise
    if gpus:
        spawner.log.info("torchrig lab: %s gets GPUs %s", name, ",".join(gpus))


def post_stop(lab: dict[str, Any], spawner: Any) -> None:
    freed = give_back_gpus(lab, spawner.user.name)
    if freed:
        spawner.log.info("torchrig lab: %s gave back GPUs %s", spawner.user.name, ",".join(freed))
