"""`torchrig verify`: correctness checks on every visible GPU; exit 0 when all pass, else 1.

Never falls back to the CPU: without a usable GPU it stops at once with one line naming
the likely cause. What each check compares and its tolerance: torchrig.verify.result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from torchrig.cli.common import add_json_option

if TYPE_CHECKING:
    import argparse

GROUPS_HELP = "matmul,amp,compile,sdpa,dataloader,pinned,nccl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_option(parser)
    parser.add_argument(
        "--only",
        metavar="GROUPS",
        help=f"run only these check groups, comma-separated: {GROUPS_HELP}",
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON result here")
    from torchrig.cli import slurm_jobs

    slurm_jobs.add_verify_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from torchrig.cli.output import console, print_json
    from torchrig.fsutil import write_atomically
    from torchrig.verify.env import require_cuda
    from torchrig.verify.result import CheckResult
    from torchrig.verify.runner import GROUPS, parse_only, run_verify

    if args.nodes is not None:
        from torchrig.cli.slurm_jobs import verify_nodes

        return verify_nodes(args)
    groups = parse_only(args.only, GROUPS)
    torch = require_cuda()
    out = console()
    colours = {"pass": "green", "fail": "bold red", "skip": "yellow"}

    def show(result: CheckResult) -> None:
        out.print(f"[{colours[result.status]}]{escape(result.line())}[/]")

    if not args.json:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        out.print(
            f"[bold]verify[/] {torch.cuda.device_count()} GPU(s): {escape(names)}; "
            f"torch {escape(str(torch.__version__))}, CUDA {escape(str(torch.version.cuda))}"
        )
    report = run_verify(torch, groups, on_result=None if args.json else show)
    data = report.to_dict()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(args.out, json.dumps(data, indent=2, default=str) + "\n")
    if args.json:
        print_json(data)
    else:
        colour = "green" if report.passed else "bold red"
        out.print(f"[{colour}]{escape(report.summary())}[/]")
    return 0 if report.passed else 1
