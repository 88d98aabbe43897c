"""A local Hugging Face model folder (`--model-path`), checked before any work: its
config.json, read once, with one line naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError

FIX = "give the folder written by save_pretrained (config.json + *.safetensors)"


def model_config(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise UsageError(f"--model-path {path} does not exist", FIX)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{path} is not a Hugging Face model folder (no config.json)", FIX
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}/config.json cannot be read ({exc})", "check the file") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}/config.json is not an object", "check the file")
    return config


def positive_int(config: dict[str, Any], *keys: str, default: int) -> int:
    """The first of `keys` that holds a positive integer, else `default`."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default
