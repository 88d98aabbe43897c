"""verify's pure parts: tolerances, verdicts, the no-GPU message and the CLI's exit code.

No GPU and, for most tests, no torch: a fake torch module stands in where one is needed.
The GPU side runs in tests/gpu/ on the lent device (results in benchmarks/results/).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from torchrig.cli.main import main
from torchrig.errors import CheckFailed, UsageError
from torchrig.verify.env import (
    DOCTOR_FIX,
    NoCudaFacts,
    no_cuda_reason,
    require_cuda,
    throttle_names,
)
from torchrig.verify.result import (
    AMP_LOSS_RATIO,
    MATMUL_TOLERANCE,
    CheckResult,
    VerifyReport,
    loss_decreased,
    rel_error_verdict,
)
from torchrig.verify.runner import GROUPS, parse_only

ROOT = Path(__file__).resolve().parents[2]


# --- tolerances and verdicts ----------------------------------------------------------------


def test_tolerances_are_ordered_by_precision() -> None:
    t = MATMUL_TOLERANCE
    assert set(t) == {"bf16", "fp16", "tf32", "fp32"}
    assert t["fp32"] < t["tf32"] <= t["fp16"] < t["bf16"]


def test_fp32_tolerance_catches_a_product_that_silently_ran_in_tf32() -> None:
    typical_tf32_error = 3e-4  # measured on an H100: 2.9e-4 at 2048³
    assert rel_error_verdict(typical_tf32_error, MATMUL_TOLERANCE["fp32"]) == "fail"
    assert rel_error_verdict(typical_tf32_error, MATMUL_TOLERANCE["tf32"]) == "pass"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_never_pass(bad: float) -> None:
    assert rel_error_verdict(bad, 1e9) == "fail"


def test_error_at_the_tolerance_passes_and_above_fails() -> None:
    assert rel_error_verdict(1e-2, 1e-2) == "pass"
    assert rel_error_verdict(1.0001e-2, 1e-2) == "fail"


def test_loss_must_fall_to_the_ratio_and_stay_finite() -> None:
    assert loss_decreased([2.3, 1.5, 0.2])
    assert not loss_decreased([2.3, 2.2, 2.3 * AMP_LOSS_RATIO + 0.01])
    assert not loss_decreased([2.3, math.nan, 0.1])
    assert not loss_decreased([2.3])


def test_report_fails_when_any_check_fails_and_skips_do_not() -> None:
    report = VerifyReport(environment={"gpu_name": "X"})
    report.checks = [
        CheckResult("matmul bf16", "pass", "ok", device="cuda:0"),
        CheckResult("nccl all-reduce", "skip", "needs two or more GPUs", device="all"),
    ]
    assert report.passed
    report.checks.append(CheckResult("sdpa flash", "fail", "rel err 1e-1", device="cuda:0"))
    assert not report.passed
    data = report.to_dict()
    assert data["passed"] is False
    assert data["counts"] == {"pass": 1, "fail": 1, "skip": 1}
    assert data["tolerances"]["matmul_rel_error"] == MATMUL_TOLERANCE
    assert "1 check(s) FAILED" in report.summary()


def test_an_empty_report_does_not_pass() -> None:
    assert not VerifyReport(environment={}).passed


def test_each_check_prints_status_name_device_and_numbers() -> None:
    line = CheckResult("matmul fp16", "pass", "2048³ rel err 2.1e-04", "cuda:1", seconds=0.1).line()
    assert line.startswith("PASS")
    assert "matmul fp16 [cuda:1]" in line
    assert "rel err 2.1e-04" in line


def test_only_accepts_known_groups_in_canonical_order() -> None:
    assert parse_only(None, GROUPS) == GROUPS
    assert parse_only("nccl, matmul", GROUPS) == ("matmul", "nccl")
    with pytest.raises(UsageError, match="bogus"):
        parse_only("matmul,bogus", GROUPS)


def test_throttle_bits_are_named() -> None:
    assert throttle_names(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert throttle_names(0) == []


# --- no GPU: one line naming the likely cause ------------------------------------------------


def _facts(**kw: object) -> NoCudaFacts:
    base: dict[str, object] = {
        "torch_version": "2.11.0+cu130",
        "torch_cuda": "13.0",
        "visible_devices": None,
        "driver_present": True,
        "driver_version": "535.104.05",
        "init_error": None,
    }
    base.update(kw)
    return NoCudaFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (_facts(torch_version=None), "PyTorch is not installed"),
        (_facts(torch_version="2.13.0+cpu", torch_cuda=None), "CPU-only build (torch 2.13.0+cpu)"),
        (_facts(visible_devices=""), "CUDA_VISIBLE_DEVICES='' hides every GPU"),
        (_facts(visible_devices="-1"), "CUDA_VISIBLE_DEVICES='-1' hides every GPU"),
        (_facts(driver_present=False), "without --gpus all"),
        (
            _facts(init_error="The NVIDIA driver on your system is too old"),
            "driver 535.104.05 cannot run torch 2.11.0+cu130 built for CUDA 13.0",
        ),
    ],
)
def test_no_cuda_reason_names_the_likely_cause(facts: NoCudaFacts, expected: str) -> None:
    reason = no_cuda_reason(facts)
    assert expected in reason
    assert "\n" not in reason


def _fake_torch(cuda: str | None) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.__version__ = "2.13.0+cpu" if cuda is None else "2.11.0+cu130"  # type: ignore[attr-defined]
    torch.version = types.SimpleNamespace(cuda=cuda)  # type: ignore[attr-defined]

    def init() -> None:
        raise RuntimeError("Found no NVIDIA driver on your system.\nmore text")

    torch.cuda = types.SimpleNamespace(is_available=lambda: False, init=init)  # type: ignore[attr-defined]
    return torch


def test_require_cuda_never_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(cuda=None))
    with pytest.raises(CheckFailed) as info:
        require_cuda()
    assert "CPU-only build" in info.value.message
    assert info.value.fix == DOCTOR_FIX
    assert info.value.exit_code == 1


def test_require_cuda_quotes_what_cuda_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(cuda="13.0"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(CheckFailed) as info:
        require_cuda()
    if "no NVIDIA driver or device is visible" not in info.value.message:  # a host with a driver
        assert "Found no NVIDIA driver on your system." in info.value.message
        assert "more text" not in info.value.message


def test_require_cuda_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(CheckFailed, match="PyTorch is not installed"):
        require_cuda()


@pytest.mark.parametrize("verb", ["verify", "bench"])
def test_cli_exits_1_with_one_line_naming_doctor(
    verb: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(cuda=None))
    assert main([verb]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "torch.cuda.is_available() is False" in err[0]
    assert "torchrig doctor --inside" in err[0]


def test_verify_with_real_cpu_torch_exits_1() -> None:
    """With a real torch and no GPU (CI installs none; /tmp/vt-style venvs do): exit 1."""
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "torchrig.cli.main", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: torch.cuda.is_available() is False: ")
    assert "torchrig doctor --inside" in lines[0]
    assert done.stdout == ""
