"""Issue 10, finding 7: `up` on a workbench that is already running prints its URLs only
once it is healthy, as a fresh start does (it may be restarting, or broken)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from torchrig.cli.main import main
from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.engine import RecordingEngine
from torchrig.engine.base import RunSpec
from torchrig.host.facts import Engine, HostFacts, System
from torchrig.launch.session import Session
from torchrig.spec.load import parse_spec, spec_digest

IMAGE = "torchrig/demo:cpu-0123456789ab"
SPEC = '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\n[user]\nname = "ada"\n'
HOST = HostFacts(
    system=System(arch="x86_64", cpus=2, memory_bytes=8 << 30, user="ada", uid=4242, gid=4343),
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True)],
)


class Restarting(RecordingEngine):
    """A running workbench whose health check answers `states` in turn, then the last."""

    def __init__(self, states: list[str]) -> None:
        super().__init__()
        self.states = states
        self.polls = 0
        self.add_image(IMAGE)
        super().run(RunSpec(image=IMAGE, name="torchrig-demo"))
        self.logs_of["torchrig-demo"] = ["supervise: jupyter exited 1"]

    def health_of(self, container: str, info: Mapping[str, Any]) -> str:
        self.polls += 1
        return self.states[min(self.polls, len(self.states)) - 1]


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Session:
    return demo_session(tmp_path, monkeypatch)


def demo_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Session:
    """`up` of the demo spec with a build that is already there (also test_up_engine_calls)."""
    spec_path = tmp_path / "torchrig.toml"
    spec_path.write_text(SPEC)
    spec = parse_spec(SPEC)
    compat = load_compat()
    made = Session(spec_path, spec, spec_digest(spec), HOST, compat, resolve(spec, HOST, compat))
    monkeypatch.setattr("torchrig.cli.common.session_from", lambda args: made)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys of the machine's

    class Built:
        tag = IMAGE
        built = False

    monkeypatch.setattr("torchrig.launch.up.build", lambda *a, **k: Built())
    # As root (CI), the workbench user 4242 could not write tmp_path: not what is tested here.
    monkeypatch.setattr("torchrig.launch.up.check_workspace_access", lambda *a: False)
    return made


def up(engine: Restarting, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("torchrig.launch.session.engine_for", lambda session, name: engine)
    return main(["up"])


def test_urls_only_after_the_running_workbench_is_healthy(
    session: Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = Restarting(["starting", "starting", "starting", "healthy"])
    assert up(engine, monkeypatch) == 0
    assert engine.polls == 4
    assert "is up" in capsys.readouterr().out


def test_an_unhealthy_running_workbench_is_an_error_not_urls(
    session: Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = Restarting(["unhealthy"])
    assert up(engine, monkeypatch) == 5
    out, err = capsys.readouterr()
    assert "http://" not in out + err
    assert "torchrig-demo did not start: unhealthy" in err
    assert "supervise: jupyter exited 1" in err
    assert engine.inspect("torchrig-demo") is not None  # a running workbench is never removed
