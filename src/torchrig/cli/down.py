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
    from torchrig.cli.output import print_json
    from torchrig.launch.session import engine_for, open_session
    from torchrig.launch.up import down

    session = open_session(args)
    done = down(session, engine_for(session, args.engine), progress_printer(args), purge=args.purge)
    if args.json:
        print_json({"done": done})
    else:
        print("\n".join(done) if done else "nothing to do: the workbench is not up")
    return 0
