"""`torchrig host` through the CLI's error boundary, with saved facts and the live probe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from torchrig.cli import host as host_verb
from torchrig.cli import main as cli_main
from torchrig.host.facts import HostFacts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "host"
H100_JSON = FIXTURES / "h100-sxm" / "host.json"
CPU_ONLY_JSON = FIXTURES / "cpu-only.json"


@pytest.fixture(autouse=True)
def only_the_host_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the parser with `host` alone, so these tests do not depend on other verbs."""
    monkeypatch.setattr(cli_main, "VERBS", {"host": cli_main.VERBS["host"]})


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_of_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "host", "--json")
    assert code == 0, err
    facts = HostFacts.model_validate_json(out)
    assert facts.system.cpus >= 1 and facts.collected_at


def test_human_report_of_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "host")
    assert code == 0
    assert out.startswith("Host ") and "Container engines" in out and "/dev/shm" in out
    assert "\x1b[" not in out  # plain text when not a terminal


def test_saved_h100_facts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "host", "--host", str(H100_JSON))
    assert (code, err) == (0, "")
    assert f"facts saved in {H100_JSON}, collected 2026-11-24T00:49:34+00:00" in out
    assert "Ubuntu 24.04.3 LTS" in out and "16 CPUs" in out
    assert "NVIDIA 580.159.04, supports CUDA up to 13.0" in out
    [row] = [line for line in out.splitlines() if "H100" in line]
    assert row.split()[0] == "0"
    for cell in ("NVIDIA H100 80GB HBM3", "79.6 GiB", "9.0", "off", "00000000:00:06.0"):
        assert cell in row
    assert "No usable container engine" in out
    assert "/dev/shm 128 GiB, memlock unlimited" in out
    assert "warning" not in out


def test_saved_cpu_only_facts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "host", "--host", str(CPU_ONLY_JSON))
    assert code == 0
    assert "No NVIDIA GPU found (NVML: NVML Shared Library Not Found;" in out
    assert "docker  /usr/local/bin/docker, client 28.2.2, server 20.10.24+dfsg1, answers" in out
    assert "NVIDIA runtime no; CDI devices none; storage /var/lib/docker (78.5 GiB free)" in out
    assert "podman  the podman CLI is not installed" in out
    assert "Notes" not in out  # the no-GPU note is shown once, where the GPUs would be


def test_saved_facts_round_trip_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "host", "--host", str(H100_JSON), "--json")
    assert code == 0
    assert json.loads(out) == json.loads(H100_JSON.read_text())


def test_small_shm_warns(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = json.loads(CPU_ONLY_JSON.read_text())
    data["system"]["shm_bytes"] = 64 * 2**20  # what `docker run` gives without --shm-size
    data["notes"].append("docker info failed: something odd")
    saved = tmp_path / "in-container.json"
    saved.write_text(json.dumps(data))
    code, out, _ = run_main(capsys, "host", "--host", str(saved))
    assert code == 0
    assert "warning: /dev/shm is only 64 MiB (Docker's default)" in out
    assert "--shm-size" in out
    assert "Notes\n  - docker info failed: something odd" in out


def test_mig_gpus_are_shown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = json.loads(H100_JSON.read_text())
    second = dict(data["gpus"][0], index=1, mig=True, pci_bus_id="00000000:2A:00.0")
    data["gpus"].append(second)
    saved = tmp_path / "two.json"
    saved.write_text(json.dumps(data))
    _, out, _ = run_main(capsys, "host", "--host", str(saved))
    rows = [line.split() for line in out.splitlines() if "H100" in line]
    assert [(r[0], r[-2]) for r in rows] == [("0", "off"), ("1", "on")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not readable JSON"),
        ('{"gpus": "many"}', "gpus"),
        ('{"system": {"cpus": "lots"}}', "system.cpus"),
        ("[]", "(top level)"),
        ('{"schema_version": 99}', "schema_version 99"),
    ],
)
def test_bad_host_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "host.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run_main(capsys, "host", "--host", str(path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: host facts file ")
    assert message in err and "Traceback" not in err


def test_module_directly_with_its_own_parser(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="torchrig host")
    host_verb.add_arguments(parser)
    assert host_verb.run(parser.parse_args(["--host", str(CPU_ONLY_JSON), "--json"])) == 0
    assert HostFacts.model_validate_json(capsys.readouterr().out).hostname == "vm"
