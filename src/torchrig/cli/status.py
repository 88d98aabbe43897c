"""`torchrig status`: is the workbench up, healthy, and where."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from torchrig.cli.common import add_workbench_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.output import print_json
    from torchrig.launch.runplan import container_name
    from torchrig.launch.session import engine_for, open_session

    session = open_session(args)
    engine = engine_for(session, args.engine)
    name = container_name(session.spec)
    info = engine.inspect(name)
    warnings: list[str] = []
    if info is None:
        state: dict[str, object] = {"name": name, "state": "absent"}
    else:
        ports = {k: [f"{ip}:{p}" for ip, p in v] for k, v in engine.port(name).items()}
        health = engine.health(name)
        # Podman without systemd runs the check in health(): its output is in a new inspect.
        info = engine.inspect(name) or info
        warnings = health_warnings(info)
        state = {
            "name": name,
            "state": (info.get("State") or {}).get("Status", "unknown"),
            "health": health,
            "image": (info.get("Config") or {}).get("Image", ""),
            "ports": ports,
            "warnings": warnings,
        }
    if args.json:
        print_json(state)
    else:
        print("  ".join(f"{k}: {v}" for k, v in state.items() if k != "warnings"))
        for warning in warnings:
            print(f"warning: {warning}")
    return 0


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
