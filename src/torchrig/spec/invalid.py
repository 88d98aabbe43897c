"""A validator's verdict, shared by the spec's models (model.py, lab.py) and its loader."""

from __future__ import annotations


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
