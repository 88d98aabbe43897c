"""`torchrig export-model CHECKPOINT --format onnx|exported-program|torchscript`.

Runs where PyTorch is (the workbench: `torchrig exec -- torchrig export-model ...`). Exit 0:
written and checked; 1: the exported model's outputs do not match PyTorch's (nothing is
kept); 2: bad input (not a trained classifier, unknown format, ONNX tools missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torchrig.cli.common import add_json_option
from torchrig.errors import UsageError

if TYPE_CHECKING:
    import argparse

FORMAT_NAMES = ("onnx", "exported-program", "torchscript")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT",
        help="a text-classify or image-classify run folder, its final/ or a checkpoints/step-*",
    )
    parser.add_argument("--format", required=True, choices=FORMAT_NAMES)
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="where to write (default RUN/export/model.EXT)"
    )
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError(
            "export-model needs PyTorch, which this Python lacks",
            f"run it in the workbench: torchrig exec -- torchrig export-model {args.checkpoint} "
            f"--format {args.format}",
        ) from None
    from torchrig.cli.output import console, print_json
    from torchrig.model_export.run import export_model

    result = export_model(args.checkpoint, args.format, args.out)
    if args.json:
        print_json(result.to_dict())
        return 0
    out = console()
    out.print(
        f"{result.format}: {result.path} ({result.bytes / 2**20:.1f} MiB), "
        f"{len(result.labels)} classes, inputs {', '.join(result.inputs)}"
    )
    out.print(
        f"checked: batch {result.check_batch}, largest logit difference "
        f"{result.max_abs_diff:.2e} (allowed {result.atol:g} + {result.rtol:g} × |logit|)"
    )
    out.print(f"labels and preprocessing: {result.sidecar}")
    return 0
