"""`torchrig build`: build the workbench image (locking first if there is no lock)."""

from __future__ import annotations

import argparse

from torchrig.cli.common import add_workbench_options, progress_printer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)
    parser.add_argument("--no-cache", action="store_true", help="rebuild every layer")


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.cli.output import print_json
    from torchrig.launch.session import engine_for
    from torchrig.launch.up import build

    session = session_from(args)
    engine = engine_for(session, args.engine)
    result = build(session, engine, progress_printer(args), no_cache=args.no_cache).result
    if args.json:
        print_json(
            {
                "image": result.tag,
                "built": result.built,
                "seconds": round(result.seconds, 2),
                "downloaded_bytes": result.downloaded_bytes,
                "engine": engine.name,
            }
        )
    else:
        verb = "built" if result.built else "up to date:"
        print(f"{verb} {result.tag} ({result.seconds:.1f} s, {engine.name})")
    return 0
