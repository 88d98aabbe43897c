"""`sudo torchrig prepare`: fill the shared cache once, for every user of the machine.

Makes the group `torchrig` and /var/cache/torchrig (image/shared_cache.py), bootstraps the
base(s) into it, and, with a spec and its lock, downloads the locked wheels into it. After
that a normal user in the docker group builds without root: a registry base needs none, and
when no registry answers the bootstrapped base is here, checked before use.
"""

from __future__ import annotations

import argparse
import platform
from typing import TYPE_CHECKING

from torchrig.cli.common import (
    add_engine_option,
    add_host_option,
    add_json_option,
    add_spec_option,
    progress_printer,
)

if TYPE_CHECKING:
    from torchrig.engine.base import Engine
    from torchrig.launch.session import Session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_option(parser)
    add_host_option(parser)
    add_engine_option(parser)
    add_json_option(parser)
    parser.add_argument(
        "--distribution",
        action="append",
        default=[],
        metavar="REF",
        help='bootstrap this base (repeat for several, e.g. "ubuntu:noble"); default: the '
        "spec's base when there is a spec, else ubuntu:noble",
    )


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.output import print_json
    from torchrig.compat.model import load_compat
    from torchrig.compat.resolve import DEFAULT_DISTRIBUTION
    from torchrig.errors import UsageError
    from torchrig.image import shared_cache
    from torchrig.image.base import Bootstrapper
    from torchrig.image.wheels import fetch_all

    say = progress_printer(args)
    changes = shared_cache.create()
    for line in changes:
        say(line)
    compat = load_compat()
    arch = platform.machine()
    # (distribution, mirror, components); the spec's mirror when it names one.
    wanted: list[tuple[str, str, tuple[str, ...]]] = []
    allow_unverified = False
    session: Session | None = None
    if args.spec.is_file():
        from torchrig.cli.common import session_from

        session = session_from(args)
        allow_unverified = session.spec.base.allow_unverified
        base = session.resolution.base
        if not args.distribution and base.distribution != "image":
            dist = session.distribution()
            wanted.append((base.distribution, base.mirror, tuple(dist.components if dist else [])))
    for ref in args.distribution or ([] if wanted or session else [DEFAULT_DISTRIBUTION]):
        dist = compat.distribution(ref)
        if dist is None:
            known = ", ".join(d.ref for d in compat.distributions)
            raise UsageError(f"--distribution {ref} is not one torchrig knows", f"use {known}")
        mirror = dist.mirror_aarch64 if arch == "aarch64" and dist.mirror_aarch64 else dist.mirror
        wanted.append((ref, mirror, tuple(dist.components)))
    engine = _engine(args, session)
    bases = []
    for ref, mirror, components in wanted:
        made = Bootstrapper().bootstrap(
            ref,
            mirror,
            arch,
            shared_cache.bases_dir(),
            engine,
            components=components,
            progress=say,
            allow_unverified=allow_unverified,
        )
        bases.append({"distribution": ref, "tarball": str(made.tar_path), "sha256": made.sha256})
    wheels, downloaded = 0, 0
    lock = session.lock() if session else None
    for target in lock.targets if lock else []:
        files, got = fetch_all(target.packages, root=shared_cache.wheels_dir(), progress=say)
        wheels, downloaded = wheels + len(files), downloaded + got
    summary = {
        "shared_cache": str(shared_cache.shared_root()),
        "group": shared_cache.GROUP,
        "bases": bases,
        "wheels": wheels,
        "downloaded_bytes": downloaded,
        "changes": changes,
    }
    if args.json:
        print_json(summary)
        return 0
    print(
        f"shared cache ready: {shared_cache.shared_root()} ({len(bases)} base(s), "
        f"{wheels} wheel file(s))"
    )
    print(
        "users in the docker group now build without root; to let a user add wheels to "
        f"it too: usermod -aG {shared_cache.GROUP} NAME"
    )
    return 0


def _engine(args: argparse.Namespace, session: Session | None) -> Engine:
    from torchrig.launch.session import engine_for

    if session is not None:
        return engine_for(session, args.engine)
    from torchrig.cli.common import host_facts
    from torchrig.engine.select import choose_engine

    return choose_engine(args.engine, host_facts(args))
