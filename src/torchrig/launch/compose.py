"""The plan for other tools: compose.yaml and .devcontainer/devcontainer.json.

Both carry the plan's image tag and run arguments, the ones `torchrig up` uses, so a team
can start the workbench with `docker compose up` or VS Code's "Reopen in Container".
(Model export, ONNX and friends, is another thing: torchrig's model export package.)
"""

from __future__ import annotations

import json
from typing import Any

from torchrig import contract
from torchrig.engine.base import RunSpec
from torchrig.plan.names import PROJECT_LABEL
from torchrig.plan.plan import Plan


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


def compose_document(plan: Plan) -> dict[str, Any]:
    run = plan.run
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
    project = run.labels.get(PROJECT_LABEL, "workbench")
    return {
        "name": f"torchrig-{project}",
        "services": {project: service},
        # Named volumes by their own names, so compose shares them with `torchrig up`.
        "volumes": {m.source: {"name": m.source} for m in run.mounts if m.kind == "volume"},
    }


def render_compose(plan: Plan) -> str:
    """YAML is a superset of JSON: JSON values keep the file exact without a YAML library."""
    doc = compose_document(plan)
    lines = [
        "# Written by `torchrig export compose`: the image and run arguments of `torchrig up`.",
        "# Start it with `docker compose up -d`; JupyterLab's token is in the state volume:",
        f"# docker exec -u {plan.user.uid} {plan.run.name} cat "
        f"/home/{plan.user.name}/.torchrig/jupyter/token",
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


def render_devcontainer(plan: Plan) -> str:
    run = plan.run
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
        if m.target != contract.WORKSPACE
    ]
    doc = {
        "name": f"torchrig {run.labels.get(PROJECT_LABEL, '')}".strip(),
        "image": run.image,
        "workspaceMount": f"source={plan.workspace},target={contract.WORKSPACE},type=bind",
        "workspaceFolder": contract.WORKSPACE,
        "containerEnv": dict(run.env),
        "mounts": mounts,
        "runArgs": args,
        "forwardPorts": [p.container_port for p in run.ports],
        "overrideCommand": False,
        "remoteUser": plan.user.name,
        "updateRemoteUserUID": False,
    }
    return json.dumps(doc, indent=2) + "\n"
