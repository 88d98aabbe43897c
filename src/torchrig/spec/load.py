"""Read torchrig.toml into a Spec, turning every problem into one SpecError line.

pydantic's own wording never reaches a person: each error is rewritten to name the key path,
the line where we can find it, what is wrong and how to fix it:

    torchrig.toml:7: services.jupyter.port: expected a whole number, got string "8888" — drop
    the quotes: port = 8888

Only the first problem is reported (a typo'd key before anything else, since it often
explains the rest); fixing it and running again shows the next.
"""

from __future__ import annotations

import datetime
import difflib
import errno
import hashlib
import json
import math
import re
import tomllib
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from torchrig import userfiles
from torchrig.errors import SpecError, UsageError
from torchrig.spec.invalid import Invalid
from torchrig.spec.model import Spec, tables

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic.fields import FieldInfo

SPEC_FILE = "torchrig.toml"
# A spec is a page of TOML; reading stops past this, so `--spec /dev/zero` (or a huge file
# given by mistake) fails at once instead of filling memory.
MAX_SPEC_BYTES = 1 << 20

_TOML_FIX = 'fix the syntax: key = value, strings in "quotes", tables as [name]'


def load_spec(path: Path) -> Spec:
    """Load and validate a spec file."""
    where = str(path)
    try:
        # With the rights of the project's owner: root may be running this for someone else.
        raw = userfiles.read_bytes(path, path.parent, limit=MAX_SPEC_BYTES + 1)
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            raise _too_large(path) from None
        if exc.errno == errno.ENOENT:
            raise _error(
                "no such file", "run `torchrig init` to write one, or pass --spec PATH", path=where
            ) from None
        if exc.errno == errno.EISDIR:
            raise _error(
                "is a folder, not a file", f"pass the {SPEC_FILE} inside it", path=where
            ) from None
        raise _error(
            f"cannot be read ({exc.strerror or type(exc).__name__})",
            "check that it exists and that you may read it",
            path=where,
        ) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise _too_large(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "save it as UTF-8",
            path=where,
            line=raw.count(b"\n", 0, exc.start) + 1,
        ) from None
    # Some Windows editors start UTF-8 files with a byte order mark; TOML does not allow one.
    spec = parse_spec(text.removeprefix("\ufeff"), path=where)
    _check_key_files(spec, text, path)
    return spec


def _too_large(path: Path) -> SpecError:
    return _error(
        f"is larger than {MAX_SPEC_BYTES >> 10} KiB; a spec is a short TOML file",
        "pass the torchrig.toml of your project with --spec",
        path=str(path),
    )


def _check_key_files(spec: Spec, text: str, path: Path) -> None:
    """user.authorized_keys entries that are paths must name a file: a typo would otherwise
    leave SSH login silently off. Relative paths are read from the spec's folder."""
    for index, item in enumerate(spec.user.authorized_keys):
        if item.startswith(("ssh-", "ecdsa-", "sk-")):
            continue
        key_path = key_file_path(item, path.parent)
        if key_path.is_file():
            continue
        problem = "is a folder" if key_path.is_dir() else "does not exist"
        raise _error(
            f"{_show(item)}: {key_path} {problem}",
            "give the path of a .pub file (relative to the spec's folder, or ~/…) or paste "
            "the public key line itself",
            path=str(path),
            key=f"user.authorized_keys[{index}]",
            line=locate(text, ["user", "authorized_keys"]),
        )


def key_file_path(item: str, project: Path) -> Path:
    """Where an authorized_keys path entry points: ~ expanded, relative to the project."""
    expanded = Path(item).expanduser()
    return expanded if expanded.is_absolute() else project / expanded


def with_override(spec: Spec, option: str, table: str, key: str, value: object) -> Spec:
    """The spec with one command-line override applied through the same validation as the
    file (`--variant cu999` is exit 2 like `variant = "cu999"`, never a later surprise)."""
    data = spec.model_dump()
    data[table] = {**data[table], key: value}
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        message, fix = _explain(error, _Where(error["loc"]))
        raise UsageError(
            f"{option}: {_one_line(message)}", _one_line(fix) if fix else None
        ) from None


def parse_spec(text: str, *, path: str = SPEC_FILE) -> Spec:
    """Validate spec text; every problem becomes one SpecError line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(exc, path) from None
    except ValueError:  # an integer longer than Python's 4300-digit conversion limit
        raise _error("not valid TOML: a number is far too long", _TOML_FIX, path=path) from None
    except RecursionError:
        raise _error(
            "not valid TOML: arrays or tables are nested too deeply", _TOML_FIX, path=path
        ) from None
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, data, text, path) from None


def spec_digest(spec: Spec) -> str:
    """sha256 of the validated spec's canonical JSON: comments and layout don't change it."""
    # [lab] is who uses the image, not what is in it: adding a lab user must not make the
    # lock stale or rebuild the image.
    # [cluster] is where the image runs, not what is in it: the same for the same reason.
    dumped = spec.model_dump(mode="json", exclude={"lab", "cluster"})
    # [services.serve] came later and is off by default: left at its default it is not in
    # the digest, so the locks and images made before it existed stay fresh.
    if spec.services.serve == type(spec.services.serve)():
        del dumped["services"]["serve"]
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _error(
    message: str,
    fix: str | None = None,
    *,
    path: str,
    key: str | None = None,
    line: int | None = None,
) -> SpecError:
    """A SpecError that is one line whatever the input held (keys and values can hold
    newlines)."""
    return SpecError(
        _one_line(message),
        _one_line(fix) if fix else None,
        path=_one_line(path),
        key=_one_line(key) if key else None,
        line=line,
    )


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


# --- TOML syntax -------------------------------------------------------------------------

# tomllib's wording → ours, by the start of its message.
_TOML_MESSAGES: list[tuple[str, str, str]] = [
    (
        "illegal character '\\n'",
        "a line ends inside a string",
        'close the string with a " on the same line (use """ for text over several lines)',
    ),
    (
        "invalid value",
        "the value after = is missing or is not a TOML value",
        'write a value: "text" in quotes, a number, true or false, or a [list]',
    ),
    (
        "cannot overwrite a value",
        "a key is set twice",
        "keep one of the two lines",
    ),
    (
        "cannot declare",
        "a table is declared twice",
        "merge the two [tables] into one",
    ),
    (
        "expected ']' at the end of a table declaration",
        "a [table] header is not closed",
        "write the header as [name] on one line",
    ),
    (
        "expected '=' after a key",
        "expected = after a key",
        'write key = value, with strings in "quotes"',
    ),
    (
        "invalid statement",
        "this line is neither key = value nor a [table] header",
        'write key = value or [table]; start comments with "#"',
    ),
    (
        "unclosed array",
        "a [list] is not closed",
        "close it with ]",
    ),
]


def _toml_error(exc: tomllib.TOMLDecodeError, path: str) -> SpecError:
    message = str(exc)
    line = None
    column = None
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        message = message[: match.start()].strip()
    elif (match := re.search(r"\(at end of document\)", message)) is not None:
        message = message[: match.start()].strip()
        message += " at the end of the file"
    message = message[:1].lower() + message[1:]
    fix = _TOML_FIX
    for start, ours, hint in _TOML_MESSAGES:
        if message.startswith(start):
            message, fix = ours, hint
            break
    if column is not None:
        message += f" (column {column})"
    return _error(f"not valid TOML: {message}", fix, path=path, line=line)


# --- validation ----------------------------------------------------------------------------


class _Where:
    """A pydantic error location, read against the model.

    pydantic puts the union member it tried into the location ('int', 'list[str]',
    "literal['auto']"); `keys` is the location without those, as a person writes it, and
    `union_at` is the key path of the union field when the error came from one member.
    """

    def __init__(self, loc: Sequence[str | int]) -> None:
        self.keys: list[str | int] = []
        self.union_at: tuple[str | int, ...] | None = None
        self.member: Any = None
        self.field: FieldInfo | None = None
        current: Any = Spec
        for item in loc:
            # An optional table ([lab], [cluster]) is `Model | None`: pydantic puts no member
            # tag in the location, so its keys are the model's own.
            current = _unless_none(current)
            if _is_union(current) and isinstance(item, str):
                self.union_at = tuple(self.keys)
                self.member = current = _union_member(current, str(item))
                continue
            self.keys.append(item)
            if isinstance(current, type) and issubclass(current, BaseModel):
                self.field = current.model_fields.get(str(item))
                current = self.field.annotation if self.field else None
            elif get_origin(current) is list and isinstance(item, int):
                current = get_args(current)[0]
            else:
                current = None
        self.annotation: Any = current

    @property
    def names(self) -> list[str]:
        """The key path without list indexes: what `locate` and hints work with."""
        return [str(k) for k in self.keys if not isinstance(k, int)]

    @property
    def text(self) -> str:
        out = ""
        for key in self.keys:
            if isinstance(key, int):
                out += f"[{key}]"
            else:
                part = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
                out += ("." if out else "") + part
        return out if len(out) <= 80 else out[:79] + "…"


def _unless_none(annotation: Any) -> Any:
    if _is_union(annotation):
        members = [m for m in get_args(annotation) if m is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _union_member(union: Any, tag: str) -> Any:
    for member in get_args(union):
        origin = get_origin(member)
        if tag.startswith("list[") and origin is list:
            return member
        if tag.startswith("literal[") and origin is Literal:
            return member
        if tag == getattr(member, "__name__", None):
            return member
    return None


def _validation_error(exc: ValidationError, data: Any, text: str, path: str) -> SpecError:
    errors = exc.errors(include_url=False)
    # A typo'd key also makes the key it was meant to be look missing: report the typo.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    where = _Where(error["loc"])
    if where.union_at is not None:
        error, where, combined = _pick_union_member(errors, where, data)
        if combined is not None:
            message, fix = combined
            return _error(message, fix, path=path, key=where.text, line=locate(text, where.names))
    message, fix = _explain(error, where)
    if isinstance(error.get("ctx", {}).get("error"), Invalid):
        where = _Where([*error["loc"], *error["ctx"]["error"].at])
    return _error(message, fix, path=path, key=where.text or None, line=locate(text, where.names))


def _pick_union_member(
    errors: list[Any], where: _Where, data: Any
) -> tuple[Any, _Where, tuple[str, str | None] | None]:
    """For a value that fits no member of a union: the member of the value's own kind (a
    list's problem is inside the list), else one message naming every kind allowed."""
    value = _get(data, where.union_at or ())
    members: list[tuple[Any, _Where]] = []
    for error in errors:
        other = _Where(error["loc"])
        if other.union_at == where.union_at:
            members.append((error, other))
    for error, other in members:
        if _same_kind(value, other.member):
            return error, other, None
    wanted: list[str] = []
    for _, other in members:
        text = _describe(other.member)
        if text not in wanted:
            wanted.append(text)
    field_where = _Where(list(where.union_at or ()))
    message = f"expected {_or(wanted)}, got {_type_name(value)} {_show(value)}"
    # "drop the quotes" helps here; other hints would pick one member arbitrarily.
    fix = _type_fix(value, wanted, field_where) if isinstance(value, str) else None
    if fix is None and field_where.field is not None:
        fix = field_where.field.description
    return members[0][0], field_where, (message, fix)


def _same_kind(value: Any, member: Any) -> bool:
    if get_origin(member) is list:
        return isinstance(value, list)
    if get_origin(member) is Literal:
        return False  # a string that is not one of the literals: name all the choices
    if member is bool or member is str:
        return isinstance(value, member)
    if member is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if member is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False


def _get(data: Any, keys: Sequence[str | int]) -> Any:
    for key in keys:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


_WANTED = {
    "string_type": "a string (in quotes)",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "float_type": "a number",
    "list_type": 'a list like ["a", "b"]',
    "model_type": "a table",
    "dict_type": "a table",
}


def _explain(error: Any, where: _Where) -> tuple[str, str | None]:
    kind = error["type"]
    value = error.get("input")
    names = where.names
    if kind == "extra_forbidden":
        return "unknown key", _unknown_key_hint(names)
    if kind == "missing":
        table = ".".join(names[:-1])
        if _is_table(names):
            return "table is required but missing", f"add a [{'.'.join(names)}] table"
        under = f" under [{table}]" if table else ""
        return "is required but missing", f"add {names[-1]} = …{under} (see `torchrig schema`)"
    if kind in ("value_error", "assertion_error"):
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, Invalid):
            return cause.message, cause.fix
        msg = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return msg, None
    if kind == "literal_error":
        choices = get_args(where.annotation) if get_origin(where.annotation) is Literal else ()
        expected = _or([json.dumps(c) for c in choices]) if choices else "the documented values"
        return f"{_show(value)} is not one of the choices", f"use {expected}"
    if kind in _WANTED or kind.endswith("_type"):
        wanted = _WANTED.get(kind, kind.removesuffix("_type"))
        message = f"expected {wanted}, got {_type_name(value)} {_show(value)}"
        return message, _type_fix(value, [wanted], where)
    if kind == "finite_number":
        return f"{_show(value)} is not a finite number", "write a number like 8 or 7.5"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        ctx = error.get("ctx", {})
        bound = next((ctx[k] for k in ("ge", "le", "gt", "lt") if k in ctx), None)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        side = {
            "greater_than_equal": "less than the minimum",
            "greater_than": "not above",
            "less_than_equal": "more than the maximum",
            "less_than": "not below",
        }[kind]
        return f"{_show(value)} is {side} {bound}", _range_fix(where)
    return str(error["msg"]), None


def _unknown_key_hint(names: list[str]) -> str:
    known = _known_keys(names[:-1])
    close = difflib.get_close_matches(names[-1], known, n=1)
    if close:
        return f'did you mean "{close[0]}"?'
    # A table's name used as a key inside another table: `torch.variant = …` under [project].
    homes = [prefix for prefix, _, _ in tables() if prefix and prefix[-1] == names[-1]]
    if homes:
        table = ".".join(homes[0])
        return f"[{table}] is a table of its own; put its keys after a [{table}] header"
    # A key of another table written in the wrong place: say where it belongs.
    elsewhere = {
        name: ".".join(prefix)
        for prefix, model, _ in reversed(tables())
        if prefix and list(prefix) != names[:-1]
        for name in model.model_fields
    }
    if names[-1] in elsewhere:
        return f"{names[-1]} belongs under [{elsewhere[names[-1]]}]"
    close = difflib.get_close_matches(names[-1], list(elsewhere), n=1, cutoff=0.75)
    if close:
        return f'did you mean "{close[0]}" under [{elsewhere[close[0]]}]?'
    table = ".".join(names[:-1])
    return f"known keys{f' of [{table}]' if table else ''}: {', '.join(known)}"


def _type_fix(value: Any, wanted: list[str], where: _Where) -> str | None:
    key = where.names[-1] if where.names else "key"
    if where.keys and isinstance(where.keys[-1], int):  # an item of a list
        if any(w.startswith("a string") for w in wanted) and not isinstance(value, dict | list):
            return f'write each item in quotes, e.g. {key} = ["{_show(value).strip(chr(34))}"]'
        return None
    if isinstance(value, str):
        bare = value.strip()
        numeric = re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", bare) is not None
        if numeric and any("number" in w for w in wanted):
            return f"drop the quotes: {key} = {bare}"
        if any(w.startswith("true") for w in wanted):
            return f"write {key} = true or {key} = false, without quotes"
        if any(w.startswith("a list") for w in wanted):
            return f"write a list: {key} = [{_show(value)}]"
    if isinstance(value, float) and value.is_integer() and any("whole" in w for w in wanted):
        return f"write it without a decimal point: {key} = {int(value)}"
    if isinstance(value, datetime.date | datetime.time) and any(
        w.startswith("a string") for w in wanted
    ):
        # TOML reads an unquoted 2024-01-01 as a date; the key wants text.
        example = where.field.default if where.field is not None else None
        shown = example if isinstance(example, str) and example else value.isoformat()
        return f'TOML reads an unquoted date as a date; write text in quotes: {key} = "{shown}"'
    if isinstance(value, bool) and any(w.startswith("a string") for w in wanted):
        return f'put it in quotes if you mean text: {key} = "{str(value).lower()}"'
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and any(w.startswith("a string") for w in wanted):
        return f'put it in quotes: {key} = "{value}"'
    if any(w == "a table" for w in wanted):
        return f"write it as a [{'.'.join(where.names)}] table with its keys on the lines below"
    if any(w.startswith("true") for w in wanted):
        return f"write {key} = true or {key} = false"
    return None


def _range_fix(where: _Where) -> str | None:
    low = high = None
    for item in where.field.metadata if where.field else []:
        low = getattr(item, "ge", None) if low is None else low
        high = getattr(item, "le", None) if high is None else high
    if low is not None and high is not None:
        return f"use {low} to {high}"
    if low is not None:
        return f"use at least {low}"
    if high is not None:
        return f"use at most {high}"
    return None


def _describe(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return _or([json.dumps(c) for c in get_args(annotation)])
    if get_origin(annotation) is list:
        return "a list"
    return {
        str: "a string (in quotes)",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
    }.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _or(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "{…}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # TOML spells them inf, -inf and nan, as Python prints them
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "…"


def _type_name(value: object) -> str:
    names: dict[type, str] = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "table",
    }
    return names.get(type(value), type(value).__name__)


def _model_at(names: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Spec
    for part in names:
        field = model.model_fields.get(part)
        annotation = _unless_none(field.annotation) if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _is_table(names: list[str]) -> bool:
    return _model_at(names) is not None


def _known_keys(names: list[str]) -> list[str]:
    model = _model_at(names)
    return list(model.model_fields) if model else []


# --- finding a key's line ------------------------------------------------------------------

_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER_RE = re.compile(rf"^\[\[?\s*({_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(rf"^({_DOTTED_KEY})\s*=")


def _split_key(text: str) -> list[str]:
    parts = []
    for part in re.findall(_KEY_PART, text):
        if part.startswith('"'):
            try:
                part = json.loads(part)
            except ValueError:
                part = part[1:-1]
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return parts


def locate(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort line of a key path in TOML text (tomllib keeps no positions).

    The line that sets the key itself wins; else the deepest line that leads to it: its
    table header, an inline table (`jupyter = { port = 1 }`) or a dotted key. Integer
    parts (list indexes) are ignored: the line of the list is the answer.
    """
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    table: list[str] = []
    best: tuple[int, int] | None = None  # (depth, line)
    # Lines as TOML and editors count them: "\n" only (str.splitlines also breaks at \x85,
    # \u2028 and form feeds, which may sit inside strings and comments).
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        header = _HEADER_RE.match(line)
        if header:
            table = _split_key(header.group(1))
            full = table
        elif (key := _KEY_RE.match(line)) is not None:
            full = table + _split_key(key.group(1))
        else:
            continue
        if full == keys:
            return number
        if keys[: len(full)] == full:  # a table or inline table on the way to the key
            depth = len(full)
        elif full[: len(keys)] == keys:  # a key inside the table the error is about
            depth = len(keys)
        else:
            continue
        if best is None or depth > best[0]:
            best = (depth, number)
    return best[1] if best else None
