"""Where tests live: GPU tests in tests/gpu, whose conftest skips them with a visible reason
off a GPU; a gpu-marked test in tests/unit would run (and fail) on every CPU machine."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
GPU_MARK = re.compile(r"pytest\.mark\.gpu\b")


def test_no_gpu_test_outside_tests_gpu() -> None:
    found = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if path.parent.name != "gpu" and GPU_MARK.search(path.read_text("utf-8"))
    ]
    assert found == []


def test_the_gpu_folder_is_where_gpu_tests_are() -> None:
    assert sorted(
        p.name for p in (TESTS / "gpu").glob("test_*.py") if GPU_MARK.search(p.read_text("utf-8"))
    ) == sorted(p.name for p in (TESTS / "gpu").glob("test_*.py"))
