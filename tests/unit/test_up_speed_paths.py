"""Issue 18 (up ≤ 3 s warm): what `up` no longer does on every start.

- A host whose engine refuses raised rlimits made every `up` create a container, watch it
  fail, remove it and run it again (1.1 s); the refusal is now remembered until reboot.
- `up --engine docker` ran `podman version` and `podman info` too (3-7 s on the busy test
  host) before anything started; a named engine is now the only one probed.
- `up` returned only at the engine's first health check, 5 s after the start (Docker 20.10
  and Podman 4 have no start interval); it now runs the same check itself meanwhile.
"""

from __future__ import annotations

import subprocess
import sys
import time
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from torchrig.cli.main import main
from torchrig.engine import RecordingEngine
from torchrig.engine.base import HealthCheck, RunSpec
from torchrig.errors import ToolError
from torchrig.host.facts import HostFacts, System
from torchrig.launch import rlimits
from torchrig.launch.up import run_with_fallback, wait_healthy

IMAGE = "torchrig/demo:cpu-0123456789ab"
LIMITED = RunSpec(image=IMAGE, name="torchrig-demo", ulimits={"memlock": -1})
REFUSAL = (
    "docker: Error response from daemon: failed to create task: OCI runtime create failed: "
    "error setting rlimit type 8: operation not permitted"
)


class NoRaisedLimits(RecordingEngine):
    """An engine whose daemon may not raise rlimits, like the 2-core test host's Docker."""

    def run(self, spec: RunSpec) -> str:
        if spec.ulimits:
            self._record("run", spec)
            raise ToolError(REFUSAL)
        return super().run(spec)


@pytest.fixture
def boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("1111-boot\n")
    monkeypatch.setattr(rlimits, "BOOT_ID", boot_id)
    return boot_id


def _up_once(engine: RecordingEngine, said: list[str]) -> list[RunSpec]:
    before = len(engine.called("run"))
    run_with_fallback(engine, LIMITED, said.append)
    runs = [c.args[0] for c in engine.called("run")[before:]]
    engine.remove("torchrig-demo", force=True)
    return runs


def test_a_refused_rlimit_is_tried_once_per_boot(boot: Path) -> None:
    engine = NoRaisedLimits()
    engine.add_image(IMAGE)
    said: list[str] = []
    first = _up_once(engine, said)
    assert [bool(r.ulimits) for r in first] == [True, False]
    second = _up_once(engine, said)
    assert [bool(r.ulimits) for r in second] == [False], "no failed run on the next up"
    assert len(said) == 2 and all("memlock/stack" in line for line in said), said
    # After a reboot the daemon may have been given the limits: ask again.
    boot.write_text("2222-boot\n")
    assert [bool(r.ulimits) for r in _up_once(engine, said)] == [True, False]


def test_an_engine_that_allows_the_limits_keeps_them(boot: Path) -> None:
    engine = RecordingEngine()
    engine.add_image(IMAGE)
    said: list[str] = []
    for _ in range(2):
        assert [dict(r.ulimits) for r in _up_once(engine, said)] == [{"memlock": -1}]
    assert said == []


def test_a_named_engine_is_the_only_one_probed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []

    def probe_host(engines: object = True) -> HostFacts:
        calls.append(engines)
        return HostFacts(system=System(arch="x86_64", cpus=2, memory_bytes=8 << 30))

    fake = types.ModuleType("torchrig.host.probe")
    fake.probe_host = probe_host  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchrig.host.probe", fake)
    spec = tmp_path / "torchrig.toml"
    spec.write_text('[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\n')
    main(["up", "--engine", "docker", "--spec", str(spec)])  # fails later: no engine here
    main(["status", "--engine", "podman", "--spec", str(spec)])
    main(["status", "--spec", str(spec)])
    assert calls == [("docker",), ("podman",), True]


class SlowHealth(RecordingEngine):
    """The engine's health stays "starting" (its first check is 5 s away); the check itself,
    run now through exec, passes once the services answer (`ready`)."""

    def __init__(self, ready: bool) -> None:
        super().__init__()
        self.add_image(IMAGE)
        super().run(RunSpec(image=IMAGE, name="torchrig-demo"))
        self.ready = ready
        self.exec_handler = lambda _c, cmd: subprocess.CompletedProcess(
            list(cmd), 0 if self.ready else 1, "", ""
        )

    def health_of(self, container: str, info: Mapping[str, Any]) -> str:
        return "starting"


def test_up_returns_when_its_own_check_passes_not_at_the_engines_first_check() -> None:
    check = HealthCheck("exec python -m torchrig.workbench.health", interval_s=5, timeout_s=3)
    engine = SlowHealth(ready=True)
    started = time.monotonic()
    wait_healthy(engine, "torchrig-demo", timeout=3, check=check)
    assert time.monotonic() - started < 2
    (probe,) = engine.called("exec")
    assert probe.args[1] == ["/bin/sh", "-c", check.command]


def test_a_check_that_fails_still_waits_for_the_engine() -> None:
    check = HealthCheck("exec false", interval_s=5, timeout_s=3)
    with pytest.raises(ToolError, match="not healthy within"):
        wait_healthy(SlowHealth(ready=False), "torchrig-demo", timeout=1, check=check)
