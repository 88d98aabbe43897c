"""Kubernetes manifests as YAML text without a YAML library.

A string is written bare only when every YAML reader (1.1 and 1.2) reads it back as that
same string: a name, a path, a label key. Anything else (numbers as text, "on", "1e3",
"0755", a colon, a leading dash) is double-quoted with every non-ASCII or control character
escaped, so it can never come back as a boolean, a number or another string. Numbers,
booleans and null are written as JSON writes them. The text is exactly reproducible for
golden files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Read back as the same string by YAML 1.1 and 1.2: field names, label keys with a prefix
# ("app.kubernetes.io/name", "nvidia.com/gpu"), names and absolute paths. A leading letter,
# "_" or "/" rules out numbers, dates, ".inf" and indicators; the words below are booleans
# and nulls to YAML 1.1.
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _plain(text: str) -> bool:
    return _PLAIN.fullmatch(text) is not None and text.lower() not in _YAML_WORDS


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar of printable ASCII: every other character escaped, those
    beyond the BMP as \\U + 8 hex digits (JSON's surrogate pairs are not YAML's)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _plain(key) else _quoted(key)


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list | tuple) and item:
                out.append(f"{pad}{_key(key)}:")
                out += _lines(item, indent + (0 if isinstance(item, list | tuple) else 1))
            else:
                out.append(f"{pad}{_key(key)}: {_scalar(item)}")
        return out
    assert isinstance(value, Sequence)
    for item in value:
        if isinstance(item, Mapping) and item:
            first, *rest = _lines(item, indent + 1)
            out.append(f"{pad}- {first.lstrip()}")
            out += rest
        elif isinstance(item, list | tuple) and item:
            raise TypeError("a list directly inside a list is not used in manifests")
        else:
            out.append(f"{pad}- {_scalar(item)}")
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    if isinstance(value, str):
        return value if _plain(value) else _quoted(value)
    return json.dumps(value)


def documents(docs: Sequence[Mapping[str, Any]], header: Sequence[str] = ()) -> str:
    """A multi-document YAML file: comment lines, then each document after `---`."""
    lines = [f"# {h}" if h else "#" for h in header]
    for doc in docs:
        lines.append("---")
        lines += _lines(doc, 0)
    return "\n".join(lines) + "\n"
