"""Labelled text rows from a CSV or JSONL file: reading, class names, the hold-out split.

Formats, by extension: `.csv` (a header row names the columns), `.tsv` (the same with
tabs), `.jsonl` / `.ndjson` (one JSON object per line). The text and label columns are
named by the caller ("text" and "label" by default); an "id" column, where present, names
rows in evaluation reports, otherwise a row is "row N": its line in a JSONL file, or its
row as a spreadsheet shows it in a CSV (the header is row 1, the first record row 2).

Labels are strings or integers. Class names are the distinct labels as strings, sorted
numerically when every one is an integer (so "2" comes before "10"), else alphabetically.

What is skipped rather than refused, and counted for a note: rows whose text is empty
(or only spaces), and rows with no label (an empty cell, a missing or null field). A
file with no usable row at all is an error; so is a label column (or text column) that
no row has, and a label of another type (a float, a list).

The hold-out split (`stratified_split`) is deterministic (a function of the seed) and
stratified: each class gives about `fraction` of its rows, never its last one — a class
with a single example stays in training, and the evaluation simply has none of it.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# Stream of the generator that draws the hold-out: apart from the training order's.
SPLIT_STREAM = 0x5917


@dataclass
class Rows:
    """Usable rows of one file, in file order."""

    path: Path
    texts: list[str]
    labels: list[str]  # the label of each row, as a string
    ids: list[str]  # the id column's value, or "row N"
    skipped_empty: int = 0  # rows with an empty text
    skipped_unlabelled: int = 0  # rows without a label
    columns: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def notes(self) -> list[str]:
        out = []
        if self.skipped_empty:
            out.append(f"{self.path}: skipped {self.skipped_empty} row(s) with empty text")
        if self.skipped_unlabelled:
            out.append(f"{self.path}: skipped {self.skipped_unlabelled} row(s) with no label")
        return out


def read_rows(
    path: Path, text_column: str = "text", label_column: str = "label", id_column: str = "id"
) -> Rows:
    """The usable rows of a CSV/TSV/JSONL file (see the module docstring for the rules)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"data file {path} does not exist", "check the path given for the data")
    if not path.is_file():
        raise UsageError(f"{path} is not a file", "give a .csv or .jsonl file")
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES and suffix not in JSONL_SUFFIXES:
        raise UsageError(
            f"{path}: unknown data format {suffix or '(no extension)'!r}",
            "give a .csv, .tsv or .jsonl file (the extension decides the format)",
        )
    if path.stat().st_size == 0:
        raise UsageError(
            f"{path} is empty",
            f"give one example per row, with a {text_column!r} and a {label_column!r} column",
        )
    rows = Rows(path, [], [], [])
    try:
        if suffix in CSV_SUFFIXES:
            records: Iterator[tuple[str, dict[str, Any]]] = _csv_records(
                path, CSV_SUFFIXES[suffix], rows
            )
        else:
            records = _jsonl_records(path, rows)
        _collect(records, rows, text_column, label_column, id_column)
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})",
            "save the file as UTF-8",
        ) from None
    except csv.Error as exc:
        raise UsageError(f"{path}: not a readable CSV file ({exc})", "check the file") from None
    if not rows.texts:
        raise UsageError(
            f"{path} has no usable rows (skipped: {rows.skipped_empty} with empty text, "
            f"{rows.skipped_unlabelled} with no label)",
            f"give rows with a non-empty {text_column!r} and a {label_column!r}",
        )
    return rows


# csv's default field limit (128 KiB) would refuse a long document as "not a readable CSV".
_CSV_FIELD_LIMIT = 1 << 26


def _csv_records(path: Path, delimiter: str, rows: Rows) -> Iterator[tuple[str, dict[str, Any]]]:
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: Excel's BOM
        # strict: a quote left open is an error, not a field that swallows the rest of the
        # file (which then looked like "1 rows are too few").
        reader = csv.DictReader(handle, delimiter=delimiter, strict=True)
        if not reader.fieldnames:
            raise UsageError(f"{path} has no header row", "put the column names in the first row")
        rows.columns = [str(name) for name in reader.fieldnames]
        number = 1
        ended_at = reader.line_num  # the line the previous record ended on
        try:
            for record in reader:
                number += 1
                ended_at = reader.line_num
                yield f"row {number}", record
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                raise
            raise UsageError(
                f"{path}: row {number + 1} (line {ended_at + 1}) opens a quoted field that is "
                "never closed: the file ends inside it",
                'close the quote, or write a quote inside a field as two ("")',
            ) from None


def _jsonl_records(path: Path, rows: Rows) -> Iterator[tuple[str, dict[str, Any]]]:
    seen: dict[str, None] = {}  # field names in order of first appearance
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue  # blank lines (a trailing newline) are not records
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise UsageError(
                    f"{path}:{number}: not valid JSON ({exc})",
                    'each line must be one object, e.g. {"text": "...", "label": "..."}',
                ) from None
            if not isinstance(record, dict):
                raise UsageError(
                    f"{path}:{number}: expected an object, got {type(record).__name__}",
                    'each line must be one object, e.g. {"text": "...", "label": "..."}',
                )
            for key in record:
                seen.setdefault(str(key), None)
            rows.columns = list(seen)
            yield f"row {number}", record


def _collect(
    records: Iterator[tuple[str, dict[str, Any]]],
    rows: Rows,
    text_column: str,
    label_column: str,
    id_column: str,
) -> None:
    for where, record in records:
        text = _text(record.get(text_column), rows.path, where, text_column)
        label = _label(record.get(label_column), rows.path, where, label_column)
        if label is None:
            rows.skipped_unlabelled += 1
            continue
        if not text.strip():
            rows.skipped_empty += 1
            continue
        rows.texts.append(text)
        rows.labels.append(label)
        given_id = record.get(id_column)
        rows.ids.append(str(given_id) if given_id not in (None, "") else where)
    if not rows.columns:
        raise UsageError(f"{rows.path} has no rows", "give one example per row")
    # A CSV's columns are its header's; a JSONL file's, the fields any record has.
    for column, flag in ((label_column, "--label-column"), (text_column, "--text-column")):
        if column not in rows.columns:
            there = ", ".join(repr(c) for c in rows.columns)
            raise UsageError(
                f"{rows.path} has no column {column!r} (its columns: {there})",
                f"pass {flag} NAME with the column that holds it",
            )


def _text(value: Any, path: Path, where: str, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UsageError(
            f"{path} {where}: {column!r} is {type(value).__name__}, not a string",
            "give the text as a string",
        )
    return value


def _label(value: Any, path: Path, where: str, column: str) -> str | None:
    """The label as a string, or None for no label. Booleans and floats are refused: a
    float label (3.0) is usually a spreadsheet's doing, and would not match "3"."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UsageError(
            f"{path} {where}: label {value!r} is {type(value).__name__}",
            f"give {column!r} as a string or an integer",
        )
    text = str(value).strip()
    return text or None


def class_names(labels: list[str]) -> list[str]:
    """Distinct labels, sorted numerically if all are integers, else as strings."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(distinct)


def encode_labels(rows: Rows, names: list[str], role: str = "validation") -> list[int]:
    """Class index of each row; a label not among `names` is an error naming the row."""
    index = {name: i for i, name in enumerate(names)}
    out = []
    for label, row_id in zip(rows.labels, rows.ids, strict=True):
        if label not in index:
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise UsageError(
                f"{rows.path} {row_id}: {role} label {label!r} is not among the training "
                f"labels ({shown})",
                "fix or drop that row, or add examples of that class to the training data",
            )
        out.append(index[label])
    return out


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices), each sorted, from class indices.

    Class c of n_c rows gives floor(fraction · n_c) rows, and the rows left over to reach
    round(fraction · N) in total go to the classes with the largest remainders (ties: the
    lower class index) — the largest-remainder rule, so the shares are as even as whole
    rows allow. No class gives its last row. Which rows of a class go is a permutation
    seeded by (seed, SPLIT_STREAM).
    """
    import numpy as np

    if not 0.0 < fraction < 1.0:
        raise UsageError(f"--val-fraction must be between 0 and 1, not {fraction}")
    counts = Counter(labels)
    classes = sorted(counts)
    quota = {c: int(fraction * counts[c]) for c in classes}
    wanted = round(fraction * len(labels))
    by_remainder = sorted(classes, key=lambda c: (-(fraction * counts[c] - quota[c]), c))
    for c in by_remainder:
        if sum(quota.values()) >= wanted:
            break
        quota[c] += 1
    for c in classes:
        quota[c] = min(quota[c], counts[c] - 1)
    if sum(quota.values()) == 0:
        raise UsageError(
            f"{len(labels)} rows are too few to hold out a validation share of {fraction}",
            "give --val FILE, a larger --val-fraction, or more rows",
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_STREAM]))
    array = np.asarray(labels)
    val: list[int] = []
    for c in classes:
        members = np.flatnonzero(array == c)
        val.extend(int(i) for i in rng.permutation(members)[: quota[c]])
    held = set(val)
    return [i for i in range(len(labels)) if i not in held], sorted(val)
