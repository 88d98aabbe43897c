"""`torchrig push [REGISTRY/NAME[:TAG]]`: the built image to a registry, its digest on record.

Without an argument the target is [cluster] registry + "/" + the project's name. The digest
goes into torchrig.images beside torchrig.lock, where `torchrig export kubernetes` and the
Slurm exports read it (push/record.py).
"""

from __future__ import annotations

import argparse

from torchrig.cli.common import add_workbench_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)
    parser.add_argument(
        "target",
        nargs="?",
        metavar="REGISTRY/NAME[:TAG]",
        help="where to push, e.g. registry.example.com:5000/team/demo (default: [cluster] "
        "registry/PROJECT; the tag defaults to the local one, VARIANT-DIGEST)",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from torchrig.cli.common import session_from
    from torchrig.cli.output import print_json
    from torchrig.errors import UsageError
    from torchrig.launch.local import find_base, local_facts
    from torchrig.launch.session import engine_for
    from torchrig.push.push import parse_target, push

    session = session_from(args)
    engine = engine_for(session, args.engine)
    plan = session.plan(
        local_facts(session, base=find_base(session, engine), with_keys=False, mounts_here=False)
    )
    image = plan.image.tag
    if image is None:
        raise UsageError(
            "there is no built image to push (" + "; ".join(plan.image.pending) + ")",
            "run `torchrig build` first",
        )
    cluster = session.spec.cluster
    text = args.target or (
        f"{cluster.registry}/{session.spec.project.name}" if cluster and cluster.registry else ""
    )
    if not text:
        raise UsageError(
            "push needs a registry to push to",
            "give REGISTRY/NAME (e.g. torchrig push registry.example.com:5000/team/demo), or "
            'set registry = "host[:port]/path" under [cluster] in torchrig.toml',
        )
    target = parse_target(text, image)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    pushed, record = push(engine, image, target, session.project_dir, say)
    if args.json:
        print_json({**pushed.model_dump(), "record": str(record)})
    else:
        print(f"pushed {pushed.ref}")
        print(f"  recorded in {record}: cluster files pin this digest", file=sys.stderr)
    return 0
