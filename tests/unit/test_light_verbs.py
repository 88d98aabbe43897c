"""The verbs that reach an existing workbench never resolve PyTorch (issue 13, item 3), and
`status` shows people a table and scripts JSON (issue 11, item 6).

The resolution here fails for every build (the host's driver is older than any CUDA
variant of the pinned torch), as after a driver downgrade: `plan` and `up` refuse, and
down, status, exec, logs and jobs still work on the workbench that runs.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from torchrig.cli.main import main
from torchrig.cli.status import human_duration, render
from torchrig.engine import RecordingEngine
from torchrig.engine.base import HealthCheck, Mount, Port, RunSpec
from torchrig.launch.running import WorkbenchStatus, uptime_seconds, workbench_status

SPEC = (
    '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\nvariant = "cu130"\n'
    '[user]\nname = "ada"\nuid = 4242\ngid = 4343\n'
)
HOST = {
    "schema_version": 1,
    "system": {"arch": "x86_64", "cpus": 8, "memory_bytes": 64 << 30, "user": "ada"},
    # Too old for CUDA 13.0: every candidate build is rejected.
    "driver": {"version": "470.256.02", "cuda": "11.4"},
    "gpus": [{"index": 0, "name": "NVIDIA A100-SXM4-80GB", "cc": "8.0", "uuid": "GPU-0"}],
    "engines": [{"name": "docker", "path": "/usr/bin/docker", "reachable": True}],
}
TOKEN = "f" * 64


def _answer(container: str, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    if cmd[:1] == ["cat"]:
        return subprocess.CompletedProcess(list(cmd), 0, TOKEN + "\n", "")
    if cmd[:1] == ["nvidia-smi"]:
        return subprocess.CompletedProcess(list(cmd), 0, "0, NVIDIA A100-SXM4-80GB\n", "")
    return subprocess.CompletedProcess(list(cmd), 0, "ran\n", "")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, RecordingEngine]:
    (tmp_path / "torchrig.toml").write_text(SPEC)
    host = tmp_path / "host.json"
    host.write_text(json.dumps(HOST))
    engine = RecordingEngine()
    engine.exec_handler = _answer
    monkeypatch.setattr("torchrig.launch.session.engine_for", lambda project, name: engine)
    monkeypatch.chdir(tmp_path)
    return tmp_path, host, engine


def _start(engine: RecordingEngine, workspace: Path) -> None:
    engine.add_image("torchrig/demo:cu130-0123456789ab")
    engine.run(
        RunSpec(
            image="torchrig/demo:cu130-0123456789ab",
            name="torchrig-demo",
            env={"TORCHRIG_USER": "ada", "TORCHRIG_UID": "4242", "TORCHRIG_GID": "4343"},
            ports=(Port("127.0.0.1", 18888, 8888), Port("127.0.0.1", 12222, 2222)),
            mounts=(Mount(source=str(workspace), target="/workspace"),),
        )
    )
    engine.set_health("torchrig-demo", "healthy")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_resolution_fails_for_every_build_here(
    project: tuple[Path, Path, RecordingEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    _, host, _ = project
    code, _, err = _cli(capsys, "plan", "--host", str(host))
    assert code == 3, err


def test_light_verbs_work_when_resolution_fails(
    project: tuple[Path, Path, RecordingEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, host, engine = project
    _start(engine, folder)
    code, out, err = _cli(capsys, "status", "--host", str(host), "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "running"
    code, out, err = _cli(capsys, "exec", "--host", str(host), "--", "true")
    assert code == 0 and out == "ran\n", err
    # As the user the container runs with, read from the container.
    assert engine.called("exec")[-1].kwargs["user"] == "4242:4343"
    code, _, err = _cli(capsys, "logs", "--host", str(host))
    assert code == 0, err
    code, out, err = _cli(capsys, "jobs", "--host", str(host))
    assert code == 0 and "no jobs yet" in out, err
    code, out, err = _cli(capsys, "down", "--host", str(host))
    assert code == 0 and "removed torchrig-demo" in out, err
    code, out, err = _cli(capsys, "status", "--host", str(host))
    assert code == 0 and out.startswith("torchrig-demo is not up"), err


# A host every build would fit: the refusal below comes from the data, not the machine.
CURRENT_HOST = {**HOST, "driver": {"version": "580.95.05", "cuda": "13.0"}}


@pytest.fixture
def compat_rejecting_every_build(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bundled compat data with no build for any platform, as a bad data update would
    leave it: every candidate is rejected ("not built for x86_64")."""
    from torchrig.compat import model as compat_model

    read = compat_model._read

    def no_builds(name: str) -> dict[str, object]:
        data = read(name)
        if name == "releases.toml":
            for release in data["release"]:  # type: ignore[attr-defined]
                for variant in release["variants"]:
                    variant["platforms"] = []
        return data

    monkeypatch.setattr(compat_model, "_read", no_builds)
    compat_model.load_compat.cache_clear()
    yield
    compat_model.load_compat.cache_clear()


def test_down_and_status_work_when_the_compat_data_rejects_every_build(
    project: tuple[Path, Path, RecordingEngine],
    compat_rejecting_every_build: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, host, engine = project
    host.write_text(json.dumps(CURRENT_HOST))
    # Any torch version and variant: every candidate the data knows is tried, and refused.
    (folder / "torchrig.toml").write_text(
        SPEC.replace('version = "2.13.0"\nvariant = "cu130"\n', "")
    )
    code, out, err = _cli(capsys, "plan", "--host", str(host), "--json")
    found = json.loads(out)
    assert code == 3 and found["chosen"] is None, err
    reasons = [r["reason"] for r in found["rejected"]]
    assert len(reasons) > 10 and all("no x86_64 build" in r for r in reasons)
    _start(engine, folder)
    code, out, err = _cli(capsys, "status", "--host", str(host))
    assert code == 0 and out.startswith("torchrig-demo is running"), err
    code, out, err = _cli(capsys, "down", "--host", str(host))
    assert code == 0 and "removed torchrig-demo" in out, err
    assert engine.inspect("torchrig-demo") is None
    code, out, err = _cli(capsys, "status", "--host", str(host))
    assert code == 0 and out.startswith("torchrig-demo is not up"), err


def test_status_json_has_what_a_script_needs(
    project: tuple[Path, Path, RecordingEngine], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, host, engine = project
    _start(engine, folder)
    code, out, err = _cli(capsys, "status", "--host", str(host), "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["health"] == "healthy" and found["engine"] == "fake"
    assert found["ports"] == {"jupyter": "127.0.0.1:18888", "ssh": "127.0.0.1:12222"}
    assert found["jupyter_url"] == f"http://127.0.0.1:18888/lab?token={TOKEN}"
    assert found["ssh_command"] == "ssh -p 12222 ada@127.0.0.1"
    assert found["gpus"] == ["0, NVIDIA A100-SXM4-80GB"]
    assert found["workspace"] == str(folder) and found["workspace_free_bytes"] > 0


def test_status_for_people_is_a_table() -> None:
    status = WorkbenchStatus(
        name="torchrig-demo",
        state="running",
        health="healthy",
        uptime_s=7500,
        image="torchrig/demo:cu130-0123456789ab",
        user="ada",
        ports={"jupyter": "127.0.0.1:18888", "ssh": "127.0.0.1:12222"},
        jupyter_url="http://127.0.0.1:18888/lab?token=abc",
        ssh_command="ssh -p 12222 ada@127.0.0.1",
        workspace="/srv/demo",
        workspace_free_bytes=412 << 30,
        warnings=["low disk: /workspace has 0.9 GiB free"],
    )
    assert render(status, "docker") == [
        "torchrig-demo is running, healthy, up 2 h 5 min (docker)",
        "  Image       torchrig/demo:cu130-0123456789ab",
        "  JupyterLab  http://127.0.0.1:18888/lab?token=abc",
        "  SSH         ssh -p 12222 ada@127.0.0.1",
        "  GPUs        none",
        "  Workspace   /srv/demo (442.4 GB free)",
        "warning: low disk: /workspace has 0.9 GiB free",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5 s"), (61, "1 min"), (3600, "1 h 0 min"), (49 * 3600, "2 d 1 h")],
)
def test_durations_read_naturally(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


@pytest.mark.parametrize(
    "started",
    [
        "2026-12-06T10:00:00.123456789Z",  # Docker: nanoseconds, Z
        "2026-12-06T10:00:00.123456789+00:00",  # Podman
        "2026-12-06T10:00:00Z",
    ],
)
def test_uptime_reads_both_engines_timestamps(started: str) -> None:
    now = datetime.datetime(2026, 12, 6, 11, 0, 0, 500000, tzinfo=datetime.UTC)
    assert uptime_seconds(started, now) == 3600


def test_uptime_of_a_container_never_started_is_unknown() -> None:
    now = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)
    assert uptime_seconds("0001-01-01T00:00:00Z", now) is None
    assert uptime_seconds("", now) is None


def test_a_stopped_workbench_shows_no_urls() -> None:
    engine = RecordingEngine()
    engine.add_image("i")
    user = {"TORCHRIG_UID": "1", "TORCHRIG_GID": "1"}
    engine.run(RunSpec(image="i", name="torchrig-x", env=user))
    engine.stop("torchrig-x")
    status = workbench_status(engine, "torchrig-x")
    assert status.state != "running" and status.jupyter_url == "" and status.uptime_s is None


@pytest.mark.parametrize(("check_exit", "said"), [(0, "healthy"), (1, "starting")])
def test_status_agrees_with_up_before_the_engines_first_check(check_exit: int, said: str) -> None:
    """`up` returns once the workbench's own check passes (the engine runs its first check
    5 s later); `status` right after it said "starting" of a workbench `up` called healthy."""
    engine = RecordingEngine()
    engine.add_image("i")
    check = HealthCheck(command="torchrig-health --as ada", timeout_s=5)
    user = {"TORCHRIG_UID": "1", "TORCHRIG_GID": "1", "TORCHRIG_USER": "ada"}
    engine.run(RunSpec(image="i", name="torchrig-x", env=user, healthcheck=check))

    def answer(container: str, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        ran = list(cmd) == ["/bin/sh", "-c", check.command]
        return subprocess.CompletedProcess(list(cmd), check_exit if ran else 1, "", "")

    engine.exec_handler = answer
    assert workbench_status(engine, "torchrig-x").health == said
