"""`torchrig lock`: pin every Python package with hashes; check or export a lock."""

from __future__ import annotations

import argparse

from torchrig.cli.common import (
    add_host_option,
    add_json_option,
    add_spec_option,
    host_facts,
    load_spec_from,
    lock_path,
)
from torchrig.fsutil import write_atomically


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_option(parser)
    add_host_option(parser)
    add_json_option(parser)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="VARIANT",
        help="lock this build variant (repeat for several targets, e.g. --variant cu126 "
        "--variant cu130); default: the spec's own choice for this host",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if torchrig.lock no longer matches the spec; changes nothing",
    )
    mode.add_argument(
        "--export",
        choices=("requirements", "constraints"),
        help="print a target as hash-pinned requirements, or as the constraints file that "
        "keeps torch and the CUDA libraries in place",
    )
    parser.add_argument(
        "--target", metavar="VARIANT", help="with --export: which target (default: the first)"
    )


def run(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    if args.export:
        return _export(args)
    return _lock(args)


def _lock(args: argparse.Namespace) -> int:
    from torchrig.cli.output import print_json
    from torchrig.compat.model import load_compat
    from torchrig.lock.lockfile import render_lock
    from torchrig.lock.make import make_lock, resolutions_for
    from torchrig.units import human_bytes

    spec, digest = load_spec_from(args)
    host = host_facts(args, engines=False)
    compat = load_compat()
    resolutions = resolutions_for(spec, host, compat, args.variant)
    command = "torchrig lock" + "".join(f" --variant {v}" for v in args.variant)
    if args.spec.name != "torchrig.toml" or str(args.spec.parent) not in ("", "."):
        command += f" --spec {args.spec}"
    lock = make_lock(spec, digest, resolutions, project=args.spec.parent)
    path = lock_path(args)
    write_atomically(path, render_lock(lock, command=command))
    if args.json:
        print_json(
            {
                "lock": str(path),
                "targets": [
                    {
                        "variant": t.variant,
                        "torch": t.torch,
                        "python": t.python,
                        "platform": t.platform,
                        "packages": len(t.packages),
                        "download_bytes": t.download_bytes,
                    }
                    for t in lock.targets
                ],
            }
        )
        return 0
    for t in lock.targets:
        print(
            f"locked {t.variant}: torch {t.torch}, Python {t.python}, {t.platform}: "
            f"{len(t.packages)} packages, {human_bytes(t.download_bytes)}"
        )
    print(f"wrote {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from torchrig.cli.output import print_json
    from torchrig.compat.model import load_compat
    from torchrig.errors import CheckFailed
    from torchrig.lock.lockfile import read_lock
    from torchrig.lock.make import check_lock

    spec, _ = load_spec_from(args)
    path = lock_path(args)
    problems = check_lock(read_lock(path), spec, load_compat())
    if args.json:
        print_json({"lock": str(path), "fresh": not problems, "problems": problems})
        return 1 if problems else 0
    if problems:
        raise CheckFailed(
            f"{path} no longer matches {args.spec}: " + "; ".join(problems),
            "run `torchrig lock` to update it",
        )
    print(f"{path} matches {args.spec}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from torchrig.errors import UsageError
    from torchrig.lock.lockfile import constraints_txt, read_lock, requirements_txt

    lock = read_lock(lock_path(args))
    target = lock.target(args.target) if args.target else lock.targets[0]
    if target is None:
        have = ", ".join(t.variant for t in lock.targets)
        raise UsageError(f"the lock has no target {args.target}", f"pick one of {have}")
    text = requirements_txt(target) if args.export == "requirements" else constraints_txt(target)
    print(text, end="")
    return 0
