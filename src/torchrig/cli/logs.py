"""`torchrig logs`: the workbench's output (services, entrypoint)."""

from __future__ import annotations

import argparse

from torchrig.cli.common import add_engine_option, add_host_option, add_spec_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_option(parser)
    add_host_option(parser)
    add_engine_option(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep following")
    parser.add_argument("--tail", type=int, metavar="N", help="only the last N lines")


def run(args: argparse.Namespace) -> int:
    from torchrig.errors import UsageError
    from torchrig.launch.runplan import container_name
    from torchrig.launch.session import engine_for, open_session

    session = open_session(args)
    engine = engine_for(session, args.engine)
    name = container_name(session.spec)
    if engine.inspect(name) is None:
        raise UsageError(f"{name} is not up", "start it with `torchrig up`")
    for line in engine.logs(name, follow=args.follow, tail=args.tail):
        print(line, flush=args.follow)
    return 0
