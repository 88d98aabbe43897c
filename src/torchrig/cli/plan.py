"""`torchrig plan`: what would be built and run, and why. Changes nothing."""

from __future__ import annotations

import argparse

from torchrig.cli.common import (
    add_host_option,
    add_json_option,
    add_spec_option,
    load_spec_from,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_option(parser)
    add_host_option(parser)
    add_json_option(parser)
    parser.add_argument(
        "--variant",
        metavar="VARIANT",
        help="plan for this build variant instead of the spec's (cpu, cu126, cu130 …)",
    )


def run(args: argparse.Namespace) -> int:
    # Looked up when run, not when this module is imported: tests replace it.
    from torchrig.cli.common import session_from
    from torchrig.cli.output import print_json
    from torchrig.errors import ResolutionError, TorchrigError
    from torchrig.launch.local import find_base, local_facts
    from torchrig.launch.session import engine_for
    from torchrig.lock.make import check_lock, with_variant
    from torchrig.plan.plan import failed_plan
    from torchrig.plan.render import render_plan

    spec, _ = load_spec_from(args)
    if args.variant is not None:
        spec = with_variant(spec, args.variant)
    try:
        session = session_from(args)
    except ResolutionError as exc:
        # Scripts get the rejections on stdout; the error line still goes to stderr (exit 3).
        if args.json:
            print_json(failed_plan(spec, exc))
        raise
    lock = session.lock()
    base = None
    variant = session.resolution.variant
    if lock and lock.target(variant) and not check_lock(lock, session.spec, session.compat):
        # The tag needs the base the build would use: looked up, never pulled or made.
        try:
            base = find_base(session, engine_for(session, None))
        except TorchrigError:
            base = None
    # The mounts' host paths are this machine's: checked (exit 2 on a bad one) unless the plan
    # is for another host (--host FILE), whose files this machine cannot see.
    # The env file is shown as the person's own; `up` hands the engine a private copy of it.
    env_file = session.project_dir / "torchrig.env"
    plan = session.plan(
        local_facts(session, base=base, env_file=env_file if env_file.is_file() else None),
        lock=lock,
    )
    if args.json:
        print_json(plan.model_dump(mode="json"))
    else:
        print(render_plan(plan), end="")
    return 0
