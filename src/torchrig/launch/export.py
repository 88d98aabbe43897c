"""Write the run plan for other tools: compose.yaml and .devcontainer/devcontainer.json.

Both carry the same image and the same run arguments `torchrig up` uses, so a team can
start the workbench with `docker compose up` or VS Code's "Reopen in Container".
"""

from __future__ import annotations

import json
from typing import Any

from torchrig.engine.base import RunSpec
from torchrig.launch.runplan import Workbench


def _gpu_devices(run: RunSpec) -> list[dict[str, Any]]:
    if run.gpus is None:
        return []
    device: dict[str, Any] = {"driver": "nvidia", "capabilities": ["gpu"]}
    if run.gpus == "all":
        device["count"] = "all"
    elif isinstance(run.gpus, int):
        device["count"] = run.gpus
    else:
        device["device_ids"] = [str(g) for g in run.gpus]
    return [device]


def compose_document(wb: Workbench) -> dict[str, Any]:
    run = wb.run
    service: dict[str, Any] = {
        "image": run.image,
        "container_name": run.name,
        "hostname": run.hostname,
        "environment": dict(run.env),
        "ports": [f"{p.host_ip}:{p.host_port}:{p.container_port}" for p in run.ports],
        "volumes": [
            {"type": m.kind, "source": m.source, "target": m.target, "read_only": m.read_only}
            if m.read_only
            else {"type": m.kind, "source": m.source, "target": m.target}
            for m in run.mounts
        ],
        "shm_size": str(run.shm_size),
        "ulimits": {k: v for k, v in run.ulimits.items()},
        "security_opt": list(run.security_opt),
        "cap_drop": list(run.cap_drop),
        "cap_add": list(run.cap_add),
        "pids_limit": run.pids_limit,
        "stop_grace_period": f"{run.stop_timeout}s",
        "labels": dict(run.labels),
    }
    if run.env_file is not None:
        service["env_file"] = [str(run.env_file)]
    if run.memory:
        service["mem_limit"] = str(run.memory)
    if run.cpus:
        service["cpus"] = run.cpus
    if devices := _gpu_devices(run):
        service["deploy"] = {"resources": {"reservations": {"devices": devices}}}
    project = run.labels.get("io.torchrig.project", "workbench")
    return {
        "name": f"torchrig-{project}",
        "services": {project: service},
        # Named volumes by their own names, so compose shares them with `torchrig up`.
        "volumes": {m.source: {"name": m.source} for m in run.mounts if m.kind == "volume"},
    }


def render_compose(wb: Workbench) -> str:
    """YAML is a superset of JSON: JSON values keep the file exact without a YAML library."""
    doc = compose_document(wb)
    lines = [
        "# Written by `torchrig export compose`: the image and run arguments of `torchrig up`.",
        "# Start it with `docker compose up -d`; JupyterLab's token is in the state volume:",
        f"# docker exec -u {wb.identity.uid} {wb.run.name} cat "
        f"/home/{wb.identity.name}/.torchrig/jupyter/token",
    ]
    lines += _yaml(doc, 0)
    return "\n".join(lines) + "\n"


def _yaml(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{key}:")
                out += _yaml(item, indent + 1)
            else:
                out.append(f"{pad}{key}: {json.dumps(item)}")
    else:
        for item in value:
            if isinstance(item, dict) and item:
                first, *rest = _yaml(item, indent + 1)
                out.append(f"{pad}- {first.strip()}")
                out += rest
            else:
                out.append(f"{pad}- {json.dumps(item)}")
    return out


def render_devcontainer(wb: Workbench) -> str:
    run = wb.run
    args: list[str] = [f"--hostname={run.hostname}"]
    args += [f"--shm-size={run.shm_size}"]
    args += [f"--ulimit={k}={v}" for k, v in run.ulimits.items()]
    args += [f"--security-opt={o}" for o in run.security_opt]
    args += [f"--cap-drop={c}" for c in run.cap_drop] + [f"--cap-add={c}" for c in run.cap_add]
    args += [f"--pids-limit={run.pids_limit}", f"--stop-timeout={run.stop_timeout}"]
    if run.memory:
        args.append(f"--memory={run.memory}")
    if run.cpus:
        args.append(f"--cpus={run.cpus}")
    if run.gpus == "all":
        args.append("--gpus=all")
    elif run.gpus is not None:
        selector = run.gpus if isinstance(run.gpus, int) else ",".join(map(str, run.gpus))
        args.append(f"--gpus={selector}")
    if run.env_file is not None:
        args.append(f"--env-file={run.env_file}")
    mounts = [
        f"type={m.kind},source={m.source},target={m.target}" + (",readonly" if m.read_only else "")
        for m in run.mounts
        if m.target != "/workspace"
    ]
    doc = {
        "name": f"torchrig {run.labels.get('io.torchrig.project', '')}".strip(),
        "image": run.image,
        "workspaceMount": f"source={wb.workspace},target=/workspace,type=bind",
        "workspaceFolder": "/workspace",
        "containerEnv": dict(run.env),
        "mounts": mounts,
        "runArgs": args,
        "forwardPorts": [p.container_port for p in run.ports],
        "overrideCommand": False,
        "remoteUser": wb.identity.name,
        "updateRemoteUserUID": False,
    }
    return json.dumps(doc, indent=2) + "\n"
