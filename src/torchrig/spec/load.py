"""Read torchrig.toml into a Spec, turning every problem into one SpecError line.

pydantic's own wording never reaches a person: each error is rewritten to name the key path,
the line where we can find it, what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from torchrig.errors import SpecError
from torchrig.spec.model import Spec

SPEC_FILE = "torchrig.toml"


def load_spec(path: Path) -> Spec:
    """Load and validate a spec file."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(
            "no such file",
            "run `torchrig init` to write one, or pass --spec PATH",
            path=str(path),
        ) from None
    except IsADirectoryError:
        raise SpecError("is a folder, not a file", "pass the torchrig.toml inside it", path=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("is not UTF-8 text", "save it as UTF-8", path=str(path)) from None
    except OSError as exc:
        raise SpecError(f"cannot be read ({exc.strerror})", None, path=str(path)) from None
    return parse_spec(text, path=str(path))


def parse_spec(text: str, *, path: str = SPEC_FILE) -> Spec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(exc, path) from None
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, text, path) from None


def spec_digest(spec: Spec) -> str:
    """sha256 of the validated spec's canonical JSON: comments and layout don't change it."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _toml_error(exc: tomllib.TOMLDecodeError, path: str) -> SpecError:
    message = str(exc)
    line = None
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line = int(match.group(1))
        message = message[: match.start()].strip()
    elif (match := re.search(r"\(at end of document\)", message)) is not None:
        message = message[: match.start()].strip()
    return SpecError(
        f"not valid TOML: {message[:1].lower()}{message[1:]}",
        "fix the syntax (strings need quotes, tables are [name], one key per line)",
        path=path,
        line=line,
    )


def _validation_error(exc: ValidationError, text: str, path: str) -> SpecError:
    error = exc.errors(include_url=False)[0]
    loc = [str(p) for p in error["loc"]]
    # Union members add their own type name to the location; drop those.
    loc = [p for p in loc if not p.startswith(("literal[", "list[", "function-", "constrained-"))
           and p not in ("int", "str", "float", "bool")]
    key = ".".join(loc)
    message, fix = _explain(error, loc)
    return SpecError(message, fix, path=path, key=key or None, line=locate(text, loc))


def _explain(error: Any, loc: list[str]) -> tuple[str, str | None]:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f'did you mean "{close[0]}"?' if close else f"known keys: {', '.join(known)}"
        return "unknown key", hint
    if kind == "missing":
        if _known_keys(loc):
            return "table is required but missing", f"add a [{'.'.join(loc)}] table"
        return "is required but missing", f"add {loc[-1]} = … (see `torchrig schema`)"
    if kind in ("value_error", "assertion_error"):
        msg = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return msg, None
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{_show(value)} is not allowed", f"use one of {expected}"
    if kind.endswith("_type") or kind in ("model_type", "model_attributes_type"):
        wanted = {
            "string_type": "a string (in quotes)",
            "int_type": "a whole number",
            "bool_type": "true or false",
            "float_type": "a number",
            "list_type": "a list like [\"a\", \"b\"]",
            "model_type": "a table",
            "dict_type": "a table",
        }.get(kind, kind.removesuffix("_type"))
        return f"expected {wanted}, got {_type_name(value)} {_show(value)}", None
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{_show(value)} is out of range ({error['msg'].lower()})", None
    return str(error["msg"]), None


def _show(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, dict) else "{…}"
    return text if len(text) <= 40 else text[:37] + "…"


def _type_name(value: object) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Spec
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def locate(text: str, loc: list[str]) -> int | None:
    """Best-effort line of a key path in TOML text (tomllib keeps no positions).

    Finds the table header of loc[:-1] (or a dotted key) and then the key under it; falls
    back to the header's line.
    """
    if not loc:
        return None
    table: list[str] = []
    header_line: int | None = None
    target_table = loc[:-1]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            table = [p.strip().strip('"') for p in header.group(1).split(".")]
            if table == loc:  # the error is about a whole table
                return number
            if table == target_table:
                header_line = number
            continue
        key = re.match(r"^([A-Za-z0-9_.\"-]+)\s*=", line)
        if key:
            full = table + [p.strip().strip('"') for p in key.group(1).split(".")]
            if full == loc or full == loc[: len(full)] and len(full) >= len(target_table) + 1:
                return number
    return header_line
