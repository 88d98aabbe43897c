"""`torchrig status`: is the workbench up and healthy, since when, and how to reach it.

A light verb: it finds the workbench by the names its spec gives and never resolves
PyTorch, so it answers after a driver change that would make `plan` fail.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TYPE_CHECKING

from torchrig.cli.common import add_workbench_options

if TYPE_CHECKING:
    from torchrig.launch.running import WorkbenchStatus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import project_from
    from torchrig.cli.output import print_json
    from torchrig.launch.running import workbench_status
    from torchrig.launch.session import engine_for
    from torchrig.plan.names import container_name

    project = project_from(args)
    engine = engine_for(project, args.engine)
    status = workbench_status(engine, container_name(project.spec))
    if args.json:
        print_json({**asdict(status), "engine": engine.name})
    else:
        print("\n".join(render(status, engine.name)))
    return 0


def render(status: WorkbenchStatus, engine: str) -> list[str]:
    """The status for people: a head line, then one row per thing to know."""
    from torchrig.units import human_bytes

    if status.state == "absent":
        return [f"{status.name} is not up ({engine}): `torchrig up` starts it"]
    head = status.state
    if status.health and status.health != "none":
        head += f", {status.health}"
    if status.uptime_s is not None:
        head += f", up {human_duration(status.uptime_s)}"
    rows = [("Image", status.image)]
    if status.jupyter_url:
        rows.append(("JupyterLab", status.jupyter_url))
    if status.ssh_command:
        rows.append(("SSH", status.ssh_command))
    if "tensorboard" in status.ports:
        rows.append(("TensorBoard", f"http://{status.ports['tensorboard']}/"))
    if "metrics" in status.ports:
        rows.append(("Metrics", f"http://{status.ports['metrics']}/metrics"))
    rows.append(("GPUs", "; ".join(status.gpus) if status.gpus else "none"))
    if status.workspace:
        free = status.workspace_free_bytes
        rows.append(
            ("Workspace", status.workspace + (f" ({human_bytes(free)} free)" if free else ""))
        )
    lines = [f"{status.name} is {head} ({engine})"]
    lines += [f"  {label:<11} {value}" for label, value in rows]
    lines += [f"warning: {warning}" for warning in status.warnings]
    return lines


def human_duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
