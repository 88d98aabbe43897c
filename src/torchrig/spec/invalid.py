"""What the spec's models (model.py, cluster.py, lab.py) and its loader share to validate:
the verdict (Invalid), the strict table they all derive from, and the one-line checks."""

from __future__ import annotations

import json
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict


class Invalid(ValueError):
    """A validator's verdict: what is wrong, how to fix it, and (optionally) where.

    `at` is a key path relative to the value being validated (e.g. ("image",) from a
    model validator of [base], or (2,) for the third item of a list), so the loader can
    name the exact key and line instead of the enclosing table.
    """

    def __init__(
        self, message: str, fix: str | None = None, *, at: tuple[str | int, ...] = ()
    ) -> None:
        super().__init__(f"{message}; {fix}" if fix else message)
        self.message = message
        self.fix = fix
        self.at = at


class StrictTable(BaseModel):
    # extra="forbid": a typo must never be silently ignored; strict: a port written as
    # "8888" or a flag written as "yes" is a mistake worth naming.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def quoted(value: object) -> str:
    """A value quoted for a one-line message: escapes newlines, cuts long text."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + '…"'


def must_match(
    value: str,
    matches: Callable[[str], object],
    wrong: str,
    fix: str,
    *,
    optional: bool = False,
    at: tuple[str | int, ...] = (),
) -> str:
    """`value` if `matches` accepts it, else Invalid('"VALUE" <wrong>; <fix>').

    `matches` is the pattern's own method: `RE.fullmatch`, since `$` in `RE.match` also
    accepts a trailing newline (which would end an #SBATCH line early). `optional`: ""
    stands for "not set" and passes.
    """
    if (value or not optional) and not matches(value):
        raise Invalid(f"{quoted(value)} {wrong}", fix, at=at)
    return value
