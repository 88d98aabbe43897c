"""`torchrig doctor` through the CLI's error boundary: saved facts, this machine, --explain."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from torchrig.cli import main as cli_main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
H100_JSON = FIXTURES / "host" / "h100-sxm" / "host.json"
CPU_ONLY_JSON = FIXTURES / "host" / "cpu-only.json"
LOGS = FIXTURES / "doctor" / "logs"


@pytest.fixture(autouse=True)
def in_empty_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No torchrig.toml around unless a test writes one."""
    monkeypatch.chdir(tmp_path)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def by_id(out: str) -> dict[str, dict[str, str]]:
    checks = json.loads(out)
    assert isinstance(checks, list)
    return {c["id"]: c for c in checks}


def test_saved_h100_facts_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "doctor", "--host", str(H100_JSON), "--json")
    checks = by_id(out)
    assert code == 1 and err == ""  # no engine on the recorded machine: a failure
    assert checks["engine"]["status"] == "fail"
    assert checks["driver"]["status"] == "pass" and "580.159.04" in checks["driver"]["finding"]
    assert checks["gpu-arch"]["status"] == "pass"
    assert checks["ports"]["status"] == "skip"  # this machine's ports say nothing about that one
    for check in checks.values():
        assert set(check) == {"id", "title", "status", "finding", "fix", "source"}


def test_saved_cpu_only_facts_pass_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "doctor", "--host", str(CPU_ONLY_JSON), "--json")
    checks = by_id(out)
    assert code == 0
    assert checks["driver"]["status"] == "warn"
    assert checks["engine"]["status"] == "pass"
    assert checks["build"]["finding"].startswith("torch 2.15.0 cpu")


def test_table_for_people_and_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "doctor", "--host", str(H100_JSON))
    assert code == 1
    assert "torchrig doctor: host vm (facts from" in out
    [row] = [line for line in out.splitlines() if "│FAIL" in line]
    assert "│ engine " in row and "no container engine" in row
    assert "checks: " in out and "\x1b[" not in out
    assert err.startswith("error: 1 of 14 checks failed (engine)")


def test_a_spec_that_cannot_run_here(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "torchrig.toml").write_text(
        '[project]\nname = "t"\n[torch]\nversion = "2.13.0"\nvariant = "cu130"\n'
    )
    facts = json.loads(H100_JSON.read_text())
    facts["driver"]["version"] = "535.183.01"
    saved = tmp_path / "old-driver.json"
    saved.write_text(json.dumps(facts))
    code, out, _ = run_main(capsys, "doctor", "--host", str(saved), "--json")
    checks = by_id(out)
    assert code == 1
    assert checks["build"]["status"] == "fail"
    assert checks["driver-cuda"]["status"] == "fail"
    assert "this host has 535.183.01" in checks["driver-cuda"]["finding"]
    assert checks["lock"]["status"] == "pass"  # no lock yet


def test_an_explicit_spec_that_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(
        capsys, "doctor", "--host", str(CPU_ONLY_JSON), "--spec", "nope.toml", "--json"
    )
    assert code == 1 and by_id(out)["build"]["status"] == "fail"


def test_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    # Its speed (at most 2 s) is measured by benchmarks/doctor_speed.py, not here.
    code, out, _ = run_main(capsys, "doctor", "--json")
    checks = by_id(out)
    assert code in (0, 1)
    assert checks["ports"]["status"] != "skip"


def test_inside_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    """Without torch the first check fails; with the CPU torch, 'no CUDA GPU visible' fails."""
    code, out, _ = run_main(capsys, "doctor", "--inside", "--json")
    checks = by_id(out)
    assert code == 1
    if checks["torch"]["status"] == "fail":
        assert "torchrig doctor --inside" in checks["torch"]["fix"]
    else:
        assert checks["cuda-available"]["status"] == "fail"
        assert checks["cuda-available"]["finding"].startswith("no CUDA GPU visible")


def test_explain_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(
        capsys, "doctor", "--explain", "Failed to initialize NVML: Driver/library version mismatch"
    )
    assert code == 0
    assert "(nvml-driver-library-mismatch)" in out
    assert "cause:" in out and "fix:" in out and "apt-mark hold" in out and "source:" in out


def test_explain_stdin_lists_all_matches(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO((LOGS / "sm120-old-wheel.log").read_text()))
    code, out, _ = run_main(capsys, "doctor", "--explain", "-")
    assert code == 0
    assert "Matches 2 known failure modes, most specific first" in out
    assert out.index("gpu-arch-not-in-build") < out.index("no-kernel-image")


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(
        capsys, "doctor", "--explain", "sshd: no hostkeys available -- exiting.", "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["known"] is True and data["hint"] == ""
    assert [m["id"] for m in data["matches"]] == ["sshd-no-hostkeys"]
    assert data["matches"][0]["matched"] == "sshd: no hostkeys available -- exiting."


def test_explain_unknown_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "doctor", "--explain", "Segmentation fault (core dumped)")
    assert code == 1
    assert "matches no known failure mode" in out
    assert "torchrig doctor" in out and "NCCL_DEBUG=INFO" in out
    code, out, _ = run_main(capsys, "doctor", "--explain", "it broke", "--json")
    data = json.loads(out)
    assert code == 1 and data == {"known": False, "matches": [], "hint": data["hint"]}
    assert "NCCL_DEBUG=INFO" in data["hint"]


def test_explain_nothing_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "doctor", "--explain", "  ")
    assert code == 2 and "nothing to explain" in err


def test_inside_and_explain_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "doctor", "--inside", "--explain", "x")
    assert code == 2 and "not allowed with" in err
