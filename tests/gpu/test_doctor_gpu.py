"""`torchrig doctor --inside` on a real GPU: every GPU check passes, and an empty
CUDA_VISIBLE_DEVICES is named as what hides the GPUs (moved from tests/unit, issue 13).

Skipped with a visible reason where torch sees no NVIDIA GPU (tests/gpu/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchrig.doctor import inside
from torchrig.doctor.inside import INSIDE_CHECKS
from torchrig.doctor.model import run_checks

pytestmark = pytest.mark.gpu


def test_inside_a_gpu_machine_every_gpu_check_passes() -> None:
    results = {r.id: r for r in run_checks(INSIDE_CHECKS, inside.inside_context())}
    for name in ("torch", "cuda-build", "cuda-available", "device-count", "device-arch", "nccl"):
        assert results[name].status == "pass", results[name]
    assert results["triton-ptxas"].status in ("pass", "warn"), results["triton-ptxas"]
    assert "driver supports CUDA" in results["triton-ptxas"].finding or (
        "newer than the driver" in results["triton-ptxas"].finding
    )


def test_inside_a_gpu_machine_an_empty_cuda_visible_devices_hides_every_gpu() -> None:
    """CUDA reads CUDA_VISIBLE_DEVICES once, at initialisation: a fresh interpreter."""
    probe = (
        "import json, os; from torchrig.doctor import inside; "
        "from torchrig.doctor.model import run_checks; "
        "print(json.dumps([c.model_dump() for c in "
        "run_checks(inside.INSIDE_CHECKS, inside.inside_context())]))"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    results = {c["id"]: c for c in json.loads(done.stdout.splitlines()[-1])}
    assert results["cuda-build"]["status"] == "pass" and Path("/dev/nvidiactl").exists()
    assert results["cuda-available"]["status"] == "fail"
    assert "`unset CUDA_VISIBLE_DEVICES`" in results["cuda-available"]["fix"]
