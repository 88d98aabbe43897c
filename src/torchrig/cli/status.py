"""`torchrig status`: is the workbench up, healthy, and where."""

from __future__ import annotations

import argparse

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
    if info is None:
        state: dict[str, object] = {"name": name, "state": "absent"}
    else:
        ports = {k: [f"{ip}:{p}" for ip, p in v] for k, v in engine.port(name).items()}
        state = {
            "name": name,
            "state": (info.get("State") or {}).get("Status", "unknown"),
            "health": engine.health(name),
            "image": (info.get("Config") or {}).get("Image", ""),
            "ports": ports,
        }
    if args.json:
        print_json(state)
    else:
        print("  ".join(f"{k}: {v}" for k, v in state.items()))
    return 0
