"""`torchrig down`: stop and remove the workbench; keep its state unless --purge."""

from __future__ import annotations

import argparse

from torchrig.cli.common import add_workbench_options, progress_printer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)
    parser.add_argument(
        "--purge", action="store_true", help="also delete the state volume (home, keys, token)"
    )


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import project_from
    from torchrig.cli.output import print_json
    from torchrig.launch.session import engine_for
    from torchrig.launch.up import down

    project = project_from(args)
    done = down(project, engine_for(project, args.engine), progress_printer(args), purge=args.purge)
    if args.json:
        print_json({"done": done})
    else:
        print("\n".join(done) if done else "nothing to do: the workbench is not up")
    return 0
