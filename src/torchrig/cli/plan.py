"""`torchrig plan`: what would be built and run, and why. Changes nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrig.cli.common import (
    add_host_option,
    add_json_option,
    add_spec_option,
    host_facts,
    load_spec_from,
    lock_path,
    read_lock_if_any,
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
    from torchrig.cli.output import print_json
    from torchrig.compat.model import load_compat
    from torchrig.compat.resolve import resolve
    from torchrig.errors import ResolutionError
    from torchrig.launch.mounts import checked_mounts
    from torchrig.lock.make import with_variant
    from torchrig.plan.plan import failed_plan, make_plan
    from torchrig.plan.render import render_plan

    spec, digest = load_spec_from(args)
    if args.variant is not None:
        spec = with_variant(spec, args.variant)
    host = host_facts(args)
    compat = load_compat()
    try:
        resolution = resolve(spec, host, compat)
    except ResolutionError as exc:
        # Scripts get the rejections on stdout; the error line still goes to stderr (exit 3).
        if args.json:
            print_json(failed_plan(spec, exc))
        raise
    lock = read_lock_if_any(lock_path(args))
    # The mounts' host paths are this machine's: checked (exit 2 on a bad one) unless the plan
    # is for another host (--host FILE), whose files this machine cannot see.
    project = Path(args.spec).resolve().parent
    checked = checked_mounts(spec, project=project) if args.host is None else None
    plan = make_plan(spec, digest, host, compat, resolution, lock, checked)
    if args.json:
        print_json(plan.model_dump(mode="json"))
    else:
        print(render_plan(plan), end="")
    return 0
