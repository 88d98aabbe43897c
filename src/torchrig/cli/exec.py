"""`torchrig exec -- CMD …`: run a command in the workbench as the workbench user."""

from __future__ import annotations

import argparse

from torchrig.cli.common import add_engine_option, add_host_option, add_spec_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_option(parser)
    add_host_option(parser)
    add_engine_option(parser)
    parser.add_argument("-i", "--interactive", action="store_true", help="attach this terminal")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")


def exec_in_workbench(args: argparse.Namespace, command: list[str], *, interactive: bool) -> int:
    import sys

    from torchrig.cli.common import project_from
    from torchrig.errors import UsageError
    from torchrig.launch.running import container_user
    from torchrig.launch.session import engine_for
    from torchrig.plan.names import container_name

    project = project_from(args)
    engine = engine_for(project, args.engine)
    name = container_name(project.spec)
    info = engine.inspect(name)
    if info is None or not (info.get("State") or {}).get("Running"):
        raise UsageError(f"{name} is not running", "start it with `torchrig up`")
    done = engine.exec(
        name, command, user=container_user(info), workdir="/workspace", interactive=interactive
    )
    if not interactive:
        sys.stdout.write(done.stdout or "")
        sys.stderr.write(done.stderr or "")
    return int(done.returncode)


def run(args: argparse.Namespace) -> int:
    from torchrig.errors import UsageError

    command = list(args.command or [])
    if command[:1] == ["--"]:  # only the separator; a later `--` belongs to the command
        command = command[1:]
    if not command:
        raise UsageError("no command given", "write it after --, e.g. torchrig exec -- nvidia-smi")
    return exec_in_workbench(args, command, interactive=args.interactive)
