"""Export a trained classifier and prove the file computes what PyTorch computes.

The model is exported in float32 on the CPU (what every runtime can load), written to a
temporary file beside the target, loaded back the way a server would load it, and run on
fresh random inputs of another batch size than the one it was traced with (so a batch
dimension frozen by mistake fails the check). Only when every logit is within the format's
tolerance of the PyTorch model's is the file renamed into place, with its sidecar
`<file>.json`: classifier.json (labels, preprocessing) plus the format and the check.
A failed check leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import CheckFailed, UsageError
from torchrig.fsutil import write_atomically
from torchrig.model_export.formats import FORMATS, Format, runner, write
from torchrig.model_export.source import find_source, load_model, recipe_export

TRACE_BATCH = 2
CHECK_BATCH = 3  # not TRACE_BATCH: a frozen batch dimension must fail the check


@dataclass(frozen=True)
class Exported:
    format: str
    path: Path
    sidecar: Path
    bytes: int
    recipe: str
    labels: list[str]
    inputs: list[str]
    max_abs_diff: float
    atol: float
    rtol: float
    check_batch: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": str(self.path),
            "sidecar": str(self.sidecar),
            "bytes": self.bytes,
            "recipe": self.recipe,
            "labels": self.labels,
            "inputs": self.inputs,
            "check": {
                "max_abs_diff": self.max_abs_diff,
                "atol": self.atol,
                "rtol": self.rtol,
                "batch": self.check_batch,
                "passed": True,
            },
        }


def default_path(run: Path, fmt: Format) -> Path:
    return run / "export" / f"model{fmt.suffix}"


def export_model(checkpoint: Path, format_name: str, out: Path | None = None) -> Exported:
    fmt = FORMATS.get(format_name)
    if fmt is None:
        raise UsageError(f"unknown format {format_name!r}", f"use one of: {', '.join(FORMATS)}")
    import torch

    source = find_source(checkpoint)
    module = recipe_export(source.recipe)
    model = load_model(source)
    target = out or default_path(source.run, fmt)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp{fmt.suffix}")
    meta = dict(source.meta)
    torch.manual_seed(0)
    example, names, dynamic = module.export_inputs(meta, source.root, TRACE_BATCH)
    try:
        write(fmt, model, example, names, dynamic, meta, tmp)
        torch.manual_seed(1)  # fresh inputs, another batch size
        inputs, _, _ = module.export_inputs(meta, source.root, CHECK_BATCH)
        with torch.no_grad():
            expected = model(*inputs).float().numpy()
        got = runner(fmt, tmp)(inputs)
        diff, ok = _within(expected, got, fmt)
        if not ok:
            raise CheckFailed(
                f"the {fmt.name} model's logits differ from PyTorch's by up to {diff:.3g} "
                f"(allowed {fmt.atol:g} + {fmt.rtol:g} × |logit|; shape "
                f"{tuple(got.shape)} vs {tuple(expected.shape)})",
                "report this with the run's classifier.json; meanwhile try another --format",
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    result = Exported(
        fmt.name, target, target.with_name(target.name + ".json"), target.stat().st_size,
        source.recipe, list(meta["labels"]), names, diff, fmt.atol, fmt.rtol, CHECK_BATCH,
    )  # fmt: skip
    sidecar = {**meta, "export": {k: v for k, v in result.to_dict().items() if k != "labels"}}
    write_atomically(result.sidecar, json.dumps(sidecar, indent=2, default=str) + "\n")
    _carry_tokenizer(meta, source.root, target.parent)
    return result


def _carry_tokenizer(meta: dict[str, Any], root: Path, folder: Path) -> None:
    """Copy the tokenizer the sidecar names (relative to it) beside the exported file, so
    the export folder alone is enough to serve (`torchrig predict EXPORT --format onnx`)."""
    import shutil

    name = (meta.get("preprocess") or {}).get("tokenizer")
    if not isinstance(name, str) or not (root / name).is_dir():
        return
    if (root / name).resolve() == (folder / name).resolve():
        return
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(root / name, tmp)
    shutil.rmtree(folder / name, ignore_errors=True)
    tmp.rename(folder / name)


def _within(expected: Any, got: Any, fmt: Format) -> tuple[float, bool]:
    """(max |got − expected|, whether every logit is within atol + rtol × |expected|)."""
    import numpy as np

    if got.shape != expected.shape or not np.isfinite(got).all():
        return float("inf"), False
    error = np.abs(got - expected)
    return float(error.max()), bool((error <= fmt.atol + fmt.rtol * np.abs(expected)).all())
