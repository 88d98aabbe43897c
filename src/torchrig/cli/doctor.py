"""`torchrig doctor`: what is wrong on this machine (or in this workbench), and the exact fix.

    torchrig doctor                      host checks, before any pull or build
    torchrig doctor --host host.json     the same for facts saved on another machine
    torchrig doctor --inside             in the workbench: torch, GPUs, NCCL, Triton, services
    torchrig doctor --explain "<error>"  match a pasted error or log (- reads stdin)

Exit 0 when no check fails (warnings do not fail), 1 when one does; `--explain` exits 0 when
it recognises the text and 1 when it does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from torchrig.cli.common import add_engine_option, add_host_option, add_json_option

if TYPE_CHECKING:
    from rich.console import Console

    from torchrig.doctor.explain import Match
    from torchrig.doctor.model import Check

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        type=Path,
        default=None,
        metavar="FILE",
        help="the spec to check against (default: ./torchrig.toml if present, else the "
        "defaults `torchrig init` starts from)",
    )
    add_host_option(parser)
    add_engine_option(parser)
    add_json_option(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--inside",
        action="store_true",
        help="check from inside the workbench (torch, GPUs, NCCL, Triton, shm, services)",
    )
    mode.add_argument(
        "--explain",
        metavar="TEXT",
        help='explain a pasted error message or log ("-" reads it from stdin)',
    )


def run(args: argparse.Namespace) -> int:
    if args.explain is not None:
        return _explain(args)
    heading, checks = _inside(args) if args.inside else _host(args)
    from torchrig.doctor.model import failed

    bad = failed(checks)
    if args.json:
        from torchrig.cli.output import print_json

        print_json([c.model_dump() for c in checks])
        return 1 if bad else 0
    render_checks(checks, _console(), heading=heading)
    if bad:
        from torchrig.errors import CheckFailed

        raise CheckFailed(
            f"{len(bad)} of {len(checks)} checks failed ({', '.join(c.id for c in bad)})",
            "apply the fixes above, then run `torchrig doctor` again",
        )
    return 0


def _host(args: argparse.Namespace) -> tuple[str, list[Check]]:
    from torchrig.cli.common import host_facts
    from torchrig.doctor.host import HOST_CHECKS, host_context
    from torchrig.doctor.model import run_checks

    host = host_facts(args)
    ctx = host_context(host, spec_path=args.spec, engine=args.engine, live=args.host is None)
    where = f"facts from {args.host}" if args.host else "this machine"
    heading = f"torchrig doctor: host {host.hostname or '?'} ({where})"
    return heading, run_checks(HOST_CHECKS, ctx)


def _inside(args: argparse.Namespace) -> tuple[str, list[Check]]:
    from torchrig.doctor.inside import INSIDE_CHECKS, inside_context
    from torchrig.doctor.model import run_checks

    heading = "torchrig doctor --inside: this container"
    return heading, run_checks(INSIDE_CHECKS, inside_context())


def _console() -> Console:
    from torchrig.cli.output import console

    out = console()
    if not sys.stdout.isatty():
        out.width = max(out.width, 120)  # logs and pipes: keep each finding on few lines
    return out


def render_checks(checks: list[Check], out: Console, heading: str = "") -> None:
    from rich.markup import escape
    from rich.table import Table

    from torchrig.doctor.model import tally

    if heading:
        out.print(f"[bold]{escape(heading)}[/]")
    table = Table(show_lines=False, pad_edge=False, expand=False)
    table.add_column("Status", no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Finding", ratio=3, overflow="fold")
    table.add_column("Fix", ratio=2, overflow="fold")
    for check in checks:
        style = STYLE[check.status]
        fix = escape(check.fix)
        if check.status in ("warn", "fail") and check.source:
            fix += f"\n[dim]source: {escape(check.source)}[/]"
        table.add_row(
            f"[{style}]{check.status.upper()}[/]",
            escape(check.id),
            escape(check.finding),
            fix,
        )
    out.print(table)
    counts = tally(checks)
    out.print(
        f"{len(checks)} checks: {counts['pass']} pass, {counts['warn']} warn, "
        f"{counts['fail']} fail, {counts['skip']} skipped"
    )


def _explain(args: argparse.Namespace) -> int:
    from torchrig.doctor.explain import UNKNOWN_HINT, explain
    from torchrig.errors import UsageError

    text = sys.stdin.read() if args.explain == "-" else args.explain
    if not text.strip():
        raise UsageError(
            "nothing to explain", 'paste the error: --explain "<text>", or pipe it: --explain -'
        )
    matches = explain(text)
    if args.json:
        from torchrig.cli.output import print_json

        print_json(
            {
                "known": bool(matches),
                "matches": [m.model_dump() for m in matches],
                "hint": "" if matches else UNKNOWN_HINT,
            }
        )
        return 0 if matches else 1
    out = _console()
    if not matches:
        out.print("This text matches no known failure mode.", highlight=False)
        out.print(f"Next: {UNKNOWN_HINT}.", highlight=False)
        return 1
    render_matches(matches, out)
    return 0


def render_matches(matches: list[Match], out: Console) -> None:
    from rich.markup import escape

    count = len(matches)
    out.print(
        f"Matches {count} known failure mode{'s' if count > 1 else ''}"
        + (", most specific first:" if count > 1 else ":")
    )
    for number, m in enumerate(matches, 1):
        out.print()
        out.print(f"[bold]{number}. {escape(m.title)}[/] ({escape(m.id)})")
        out.print(f"   matched: {escape(m.matched)}")
        out.print(f"   cause:   {escape(m.cause)}")
        out.print(f"   fix:     {escape(m.fix)}")
        source = m.source + (f" — {m.url}" if m.url else "")
        out.print(f"   source:  {escape(source)}")
