"""`torchrig bench`: throughput against the device's datasheet peak, as JSON and HTML.

Each line gets a verdict: ok, low (with the likely cause), or n/a where no peak is known.
Exit 0 whatever the verdicts (a slow GPU is reported, not an error); 1 when a benchmark
could not run at all. `--from FILE` re-renders the HTML report of a recorded result
without a GPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchrig.cli.common import add_json_option

if TYPE_CHECKING:
    import argparse

GROUPS_HELP = "matmul,memcopy,h2d,allreduce,gpt2,resnet50,bert"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_option(parser)
    parser.add_argument(
        "--quick", action="store_true", help="short version: fewer repetitions, no compiled runs"
    )
    parser.add_argument(
        "--only", metavar="GROUPS", help=f"run only these groups, comma-separated: {GROUPS_HELP}"
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write the JSON result here (and FILE.html)"
    )
    parser.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="write the HTML report here (default: beside --out)",
    )
    parser.add_argument(
        "--device", type=int, default=0, metavar="N", help="CUDA device (default 0)"
    )
    parser.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        metavar="FILE",
        help="render the HTML report of a recorded JSON result; runs nothing",
    )


def run(args: argparse.Namespace) -> int:
    from torchrig.bench.report import render_html
    from torchrig.bench.runner import GROUPS, run_bench
    from torchrig.errors import UsageError
    from torchrig.verify.runner import parse_only

    if args.from_file is not None:
        if args.html is None:
            raise UsageError("--from needs --html FILE", "say where the report goes")
        try:
            result = json.loads(args.from_file.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {args.from_file}: {exc}") from None
        _write(args.html, render_html(result))
        print(f"wrote {args.html}", file=sys.stderr)
        return 0

    groups = parse_only(args.only, GROUPS)
    from torchrig.verify.env import require_cuda

    torch = require_cuda()
    if not 0 <= args.device < torch.cuda.device_count():
        raise UsageError(
            f"--device {args.device}: there are {torch.cuda.device_count()} visible GPU(s)"
        )

    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    result = run_bench(torch, groups, quick=args.quick, device=args.device, say=say)
    html_path = args.html or (args.out.with_suffix(".html") if args.out else None)
    if args.out:
        _write(args.out, json.dumps(result, indent=2, default=str) + "\n")
    if html_path:
        _write(html_path, render_html(result))
    if args.json:
        from torchrig.cli.output import print_json

        print_json(result)
    else:
        _show(result)
    for path in (args.out, html_path):
        if path:
            print(f"wrote {path}", file=sys.stderr)
    broken = [ln for ln in result["lines"] if ln["details"].get("error")]
    return 1 if broken else 0


def _write(path: Path, text: str) -> None:
    from torchrig.fsutil import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)


def _show(result: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from torchrig.cli.output import console

    out = console()
    env = result["environment"]
    out.print(
        f"[bold]bench[/] {escape(str(env.get('gpu_name')))}: torch {escape(str(env.get('torch')))}"
        f", CUDA {escape(str(env.get('cuda')))}, driver {escape(str(env.get('driver')))}"
    )
    for note in result["notes"]:
        out.print(f"[yellow]{escape(note)}[/]")
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    for column in ("line", "value", "unit", "of reference", "verdict"):
        table.add_column(column, justify="right" if column in ("value", "of reference") else "left")
    colours = {"ok": "green", "low": "bold red"}
    for ln in result["lines"]:
        d = ln["details"]
        share = d.get("mfu") if ln["group"] == "workload" else ln.get("share")
        share_text = "—" if share is None else f"{100 * share:.1f}%"
        if ln["group"] == "workload" and share is not None:
            share_text += " MFU"
        value = "—" if ln["value"] is None else f"{ln['value']:,.1f}"
        verdict = ln["verdict"] + (f": {ln['cause']}" if ln.get("cause") else "")
        if d.get("skipped") or d.get("error"):
            verdict += f": {d.get('skipped') or d.get('error')}"
        colour = colours.get(ln["verdict"], "dim")
        table.add_row(
            escape(ln["name"]), value, escape(ln["unit"]), share_text,
            f"[{colour}]{escape(verdict)}[/]",
        )  # fmt: skip
    out.print(table)
    out.print(f"{result['elapsed_s']} s")
