"""What every recipe's settings dataclass shares: presets overridden by flags, the JSON
form written to OUT/config.json and into checkpoints, and the checks every recipe makes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from torchrig.errors import UsageError

C = TypeVar("C")


def from_preset(
    cls: type[C], presets: Mapping[str, Mapping[str, Any]], name: str, **overrides: Any
) -> C:
    """The preset's settings with `overrides` (None values are ignored: flag not given)."""
    if name not in presets:
        raise UsageError(f"unknown preset {name!r}", f"use one of: {', '.join(presets)}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UsageError(f"unknown setting(s): {', '.join(unknown)}")
    values = {**presets[name], **{k: v for k, v in overrides.items() if v is not None}}
    return cls(**values)


def to_json(settings: Any) -> dict[str, Any]:
    """The dataclass as JSON-ready values (paths as strings)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) for v in value]
        out[f.name] = value
    return out


def require_at_least_one(values: Mapping[str, int]) -> None:
    """UsageError naming the first flag whose value is below 1."""
    for flag, value in values.items():
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}", f"give {flag} 1 or more")
