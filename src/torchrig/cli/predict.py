"""`torchrig predict RUN --input FILE|-`: classify texts or images with a trained classifier.

One JSON line per input on stdout (or --out): {"input", "label", "probabilities", "top_k"};
an input that cannot be classified (an image Pillow cannot read) gets {"input", "error"}
and one line on stderr, the others are still classified. Exit 0: all classified; 2: bad
input (a wrong run, a missing file, or any input that could not be classified).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from torchrig.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", type=Path, metavar="RUN",
        help="a text-classify or image-classify run folder, its final/, a checkpoint or "
        "its export/ folder (with --format onnx)",
    )  # fmt: skip
    parser.add_argument(
        "--input", required=True, metavar="FILE|-",
        help="texts: .txt (a line each), .jsonl, .csv, or - (stdin); images: an image, a "
        "folder of images, or a .txt / - of image paths",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("torch", "onnx"), default="torch",
        help="torch: the run's weights; onnx: export/model.onnx through onnxruntime",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32, metavar="N")
    parser.add_argument("--top-k", type=int, default=5, metavar="K")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write JSONL here (default stdout)"
    )


def _batches(items: Iterator[tuple[str, Any]], size: int) -> Iterator[list[tuple[str, Any]]]:
    batch: list[tuple[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.top_k < 1:
        raise UsageError("--batch-size and --top-k must be at least 1", "e.g. --batch-size 32")
    from torchrig.serve import inputs, kinds
    from torchrig.serve.classifier import InputError, load

    kinds.require(kinds.find(args.run), "classifier", "predict")
    model = load(args.run, args.format, args.device)
    if model.modality == "text":
        column = str(model.meta.get("preprocess", {}).get("text_column") or "text")
        items: Iterator[tuple[str, Any]] = inputs.texts(args.input, column)
    else:
        items = inputs.images(args.input)
    bad = 0
    out: IO[str] = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    try:
        for batch in _batches(items, args.batch_size):
            ready: list[tuple[str, Any]] = []
            for name, raw in batch:
                try:
                    data = raw if model.modality == "text" else _read_image(raw)
                    ready.append((name, model.prepare(data)))
                except InputError as exc:
                    bad += 1
                    print(f"error: {name}: {exc.message}", file=sys.stderr)
                    out.write(json.dumps({"input": name, "error": exc.message}) + "\n")
            rows = model.predict([p for _, p in ready], args.top_k)
            for (name, _), row in zip(ready, rows, strict=True):
                out.write(json.dumps({"input": name, **row}, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if bad:
        raise UsageError(
            f"{bad} input(s) could not be classified (their rows carry the error)",
            "fix or remove those inputs",
        )
    return 0


MAX_IMAGE_BYTES = 64 << 20


def _read_image(path: Path) -> bytes:
    from torchrig.serve.classifier import InputError

    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise InputError(f"larger than {MAX_IMAGE_BYTES >> 20} MiB: not read")
        if not path.is_file():
            raise InputError("not a regular file")
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or exc})") from None
