"""Golden files: compare rendered text with a committed file, or regenerate it.

    from tests.golden_util import assert_golden
    assert_golden(GOLDEN / "init" / "h100" / "torchrig.toml", render_spec("demo", facts))

On a mismatch the test fails with a unified diff and the command that regenerates the
file; set TORCHRIG_REGEN_GOLDEN=1 to write every golden file a run touches, then review the
change with `git diff tests/golden/` like any other code change. Files are compared and
written as UTF-8 bytes, exactly (no newline translation).
"""

from __future__ import annotations

import difflib
import os
import shlex
from pathlib import Path

import pytest

REGEN_ENV = "TORCHRIG_REGEN_GOLDEN"
ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def regenerating() -> bool:
    return os.environ.get(REGEN_ENV, "") not in ("", "0")


def regenerate_command() -> str:
    """The command that regenerates the golden files of the test running now."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    target = shlex.quote(current) if current else "tests/"
    return f"{REGEN_ENV}=1 PYTHONPATH=src python -m pytest {target}"


def assert_golden(path: Path, text: str) -> None:
    """Fail unless `path` holds exactly `text`; with TORCHRIG_REGEN_GOLDEN=1, write it."""
    path = Path(path)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != text.encode("utf-8"):
            path.write_bytes(text.encode("utf-8"))
        return
    if not path.exists():
        pytest.fail(
            f"golden file {shown} does not exist; create it with:\n  {regenerate_command()}",
            pytrace=False,
        )
    expected = path.read_bytes().decode("utf-8")
    if expected == text:
        return
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{shown} (golden)",
            tofile=f"{shown} (now)",
        )
    )
    if not diff.endswith("\n"):
        diff += "\n"
    pytest.fail(
        f"{shown} differs from what the code renders now:\n{diff}"
        f"If the change is intended, regenerate and review it:\n  {regenerate_command()}\n"
        f"  git diff {shown}",
        pytrace=False,
    )
