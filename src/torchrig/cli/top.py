"""`torchrig top`: the GPUs and the jobs of this project's workbench, live (every second);
`--once` prints one view, `--json` one snapshot for scripts."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrig.cli.common import add_workbench_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)
    parser.add_argument("--once", action="store_true", help="print one view and exit")
    parser.add_argument(
        "--workspace",
        type=Path,
        metavar="DIR",
        help="read this workspace's jobs (default: the workbench's /workspace folder)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between refreshes"
    )


def workbench(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The workspace whose jobs to show, and the workbench's PID namespace (None: unknown,
    e.g. --workspace, no engine, or not allowed to read it)."""
    if args.workspace is not None:
        return Path(args.workspace), None
    from torchrig.cli.common import project_from
    from torchrig.errors import TorchrigError
    from torchrig.jobs.launch import workspace_of
    from torchrig.launch.session import engine_for
    from torchrig.monitor.holders import pid_namespace
    from torchrig.plan.names import container_name

    project = project_from(args)
    try:
        engine = engine_for(project, args.engine)
    except TorchrigError:
        return project.project_dir, None  # no engine here: the project folder is the workspace
    info = engine.inspect(container_name(project.spec)) or {}
    init = (info.get("State") or {}).get("Pid")
    ns = pid_namespace(init) if isinstance(init, int) and init > 0 else None
    return workspace_of(project, engine), ns


def run(args: argparse.Namespace) -> int:
    from torchrig.errors import UsageError
    from torchrig.monitor.gpu import Reader
    from torchrig.monitor.top import live, render, snapshot
    from torchrig.train.timeline import Follower

    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval} is not a positive number of seconds",
                         "give e.g. --interval 1")  # fmt: skip
    folder, pid_ns = workbench(args)
    reader = Reader()
    followers: dict[Path, Follower] = {}  # each metrics.jsonl read incrementally

    def take() -> dict[str, object]:
        # local=False: the job PIDs are the container's; their records speak for them.
        return snapshot(folder, reader, local=False, followers=followers, pid_ns=pid_ns)

    if args.json:
        from torchrig.cli.output import print_json

        print_json(take())
        return 0
    if args.once:
        from torchrig.cli.output import console

        console().print(render(take()))
        return 0
    live(take, args.interval)
    return 0
