"""What `torchrig predict --input FILE|-` reads: texts for a text classifier, images for an
image classifier. Each item keeps a name (the text itself, or the image's path) for its
output row.

    text    FILE.jsonl: one JSON object per line, its text column (classifier.json's
            text_column, else "text"); FILE.csv: that column; any other file or "-" (stdin):
            one text per non-empty line
    image   an image file; a folder (its images, sorted, recursively); a text file or "-":
            one image path per line
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from torchrig.errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LIST_SUFFIXES = {".txt", ".lst", ".list"}  # files of image paths
MAX_LINE = 1 << 20  # one text or path: longer is not an input, it is a mistake


def lines(source: str) -> Iterator[tuple[int, str]]:
    if source == "-":
        yield from _numbered(sys.stdin, source)
        return
    with Path(source).open(encoding="utf-8", errors="replace") as handle:
        yield from _numbered(handle, source)


def _numbered(handle: IO[str], source: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(handle, 1):
        if len(line) > MAX_LINE:
            raise UsageError(
                f"{source}:{number}: a line of {len(line)} characters",
                "give one text (or path) per line",
            )
        if line.strip():
            yield number, line.rstrip("\n")


def _check_file(source: str) -> None:
    if source == "-":
        return
    path = Path(source)
    if not path.exists():
        raise UsageError(f"--input {source} does not exist", "give a file, a folder or -")
    if path.is_dir():
        return
    if not path.is_file():
        raise UsageError(f"--input {source} is not a regular file", "give a file or -")


def texts(source: str, column: str = "text") -> Iterator[tuple[str, str]]:
    """(name, text) pairs."""
    _check_file(source)
    if source != "-" and Path(source).is_dir():
        raise UsageError(
            f"--input {source} is a folder; a text classifier reads text",
            "give a .txt (one text per line), .jsonl or .csv file, or - for stdin",
        )
    suffix = Path(source).suffix.lower()
    if suffix == ".csv":
        with Path(source).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if column not in (reader.fieldnames or []):
                raise UsageError(
                    f"{source} has no {column!r} column (columns: {reader.fieldnames})",
                    f"name the text column {column!r}",
                )
            for row in reader:
                text = row.get(column) or ""
                if text.strip():
                    yield text, text
        return
    for number, line in lines(source):
        if suffix != ".jsonl":
            yield line, line
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(
                f"{source}:{number} is not JSON", "one JSON object per line in a .jsonl file"
            ) from None
        text = record.get(column) if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise UsageError(
                f"{source}:{number} has no string {column!r} field",
                f'write each line as {{"{column}": "..."}}',
            )
        yield text, text


def images(source: str) -> Iterator[tuple[str, Path]]:
    """(name, path) pairs; reading the bytes (and finding bad images) is the caller's."""
    _check_file(source)
    path = Path(source)
    if source != "-" and path.is_dir():
        for item in sorted(path.rglob("*")):
            if item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES:
                yield str(item), item
        return
    if source != "-" and path.suffix.lower() not in LIST_SUFFIXES:
        yield source, path  # one image (or not an image: decoding it says so)
        return
    for _, line in lines(source):
        yield line.strip(), Path(line.strip())
