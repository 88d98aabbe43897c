"""`torchrig verify` on a real GPU: every check passes, failures are loud, within 90 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "torchrig.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_verify_passes_on_every_visible_gpu(tmp_path: Path) -> None:
    import torch

    assert torch.cuda.is_available()
    out = tmp_path / "verify.json"
    done = _cli("verify", "--json", "--out", str(out))
    data = json.loads(done.stdout)
    failed = [c for c in data["checks"] if c["status"] == "fail"]
    assert done.returncode == 0 and not failed, failed or done.stderr[-2000:]
    assert json.loads(out.read_text())["passed"] is True
    n = torch.cuda.device_count()
    names = {(c["name"], c["device"]) for c in data["checks"]}
    for i in range(n):
        for name in ("matmul bf16", "matmul fp16", "matmul tf32", "matmul fp32", "amp training",
                     "torch.compile", "sdpa flash", "sdpa cudnn", "sdpa efficient",
                     "pinned round trip"):  # fmt: skip
            assert (name, f"cuda:{i}") in names
    nccl = next(c for c in data["checks"] if c["name"] == "nccl all-reduce")
    assert nccl["status"] == ("pass" if n >= 2 else "skip")
    assert data["elapsed_s"] <= 90, f"verify took {data['elapsed_s']} s (target 90 s)"


def test_amp_fp16_gradscaler_path() -> None:
    """The path GPUs without bf16 (CC < 8.0) take, exercised here on purpose."""
    import torch

    from torchrig.verify.checks import amp_training

    assert torch.cuda.is_available()
    result = amp_training(torch, "cuda:0", "fp16")
    assert result.status == "pass", result.detail
    assert "GradScaler" in result.detail


def test_a_wrong_result_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tolerance no real product meets, the matmul check must fail, not pass."""
    import torch

    from torchrig.verify import checks

    assert torch.cuda.is_available()
    monkeypatch.setitem(checks.MATMUL_TOLERANCE, "bf16", 1e-12)
    result = checks.matmul(torch, "cuda:0", "bf16")
    assert result.status == "fail"
    assert "rel err" in result.detail


def test_verify_output_says_pass_or_fail_per_check() -> None:
    import torch

    assert torch.cuda.is_available()
    done = _cli("verify", "--only", "matmul,pinned")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("PASS", "FAIL", "SKIP"))]
    assert len(lines) == 5 * torch.cuda.device_count()
    assert all("rel err" in ln or "exact" in ln for ln in lines)
