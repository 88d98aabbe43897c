"""`torchrig bench --quick` on a real GPU: numbers, verdicts, JSON and HTML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_reports_against_the_peak(tmp_path: Path) -> None:
    import torch

    assert torch.cuda.is_available()
    out = tmp_path / "bench.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "torchrig.cli.main", "bench", "--quick",
         "--only", "matmul,memcopy,h2d,gpt2", "--json", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["environment"]["torch"] == torch.__version__
    assert data["environment"]["driver"]
    lines = {ln["name"]: ln for ln in data["lines"]}
    for name in ("matmul bf16", "matmul fp16", "matmul tf32", "matmul fp32", "memcopy",
                 "h2d pinned", "d2h pinned", "gpt2 eager"):  # fmt: skip
        assert lines[name]["value"] and lines[name]["value"] > 0, lines[name]
    # TF32 must beat plain fp32 by far: else allow_tf32 had no effect.
    assert lines["matmul tf32"]["value"] > 2 * lines["matmul fp32"]["value"]
    if data["gpu_record"] is not None:
        assert lines["matmul bf16"]["verdict"] == "ok", lines["matmul bf16"]
        assert lines["memcopy"]["verdict"] == "ok", lines["memcopy"]
    html = out.with_suffix(".html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<script" not in html
