"""Issue 18 (up to JupyterLab ≤ 3 s warm on Docker): the engine calls of one `up`.

Each engine call is a CLI start and a daemon round trip (0.1-0.2 s on the busy 2-core test
host). `up` read the container's state twice per health poll (inspect, then inspect again
for the health), and once more per service to find its published port; the container,
volume and network lookups before the start ran one after the other.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_up_running import IMAGE, demo_session
from torchrig.cli.main import main
from torchrig.engine import RecordingEngine
from torchrig.engine.base import RunSpec

LOOKUP_S = 0.3


class StartsHealthy(RecordingEngine):
    """Docker as `up` meets it: the workbench is healthy at the first poll, and the three
    lookups before the start each take LOOKUP_S (their start and end times are kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_image(IMAGE)
        self.lookups: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def run(self, spec: RunSpec) -> str:
        cid = super().run(spec)
        self.set_health(spec.name or "", "healthy")
        # The token file, as the entrypoint writes it.
        self.exec_handler = lambda _c, cmd: subprocess.CompletedProcess(
            list(cmd), 0, "token-abc\n", ""
        )
        return cid

    def _slow(self) -> None:
        started = time.monotonic()
        time.sleep(LOOKUP_S)
        with self.lock:
            self.lookups.append((started, time.monotonic()))

    def volume_exists(self, name: str) -> bool:
        self._slow()
        return super().volume_exists(name)

    def network_exists(self, name: str) -> bool:
        self._slow()
        return super().network_exists(name)

    def inspect(self, container: str) -> dict[str, object] | None:
        if not self.called("run"):  # the lookup before the start
            self._slow()
        return super().inspect(container)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StartsHealthy:
    demo_session(tmp_path, monkeypatch)
    fake = StartsHealthy()
    monkeypatch.setattr("torchrig.launch.session.engine_for", lambda session, name: fake)
    return fake


def test_up_reads_the_container_once_per_step(engine: StartsHealthy) -> None:
    assert main(["up"]) == 0
    # The lookup before the start, one health poll, and the description after it.
    assert len(engine.called("inspect")) == 3, [c.method for c in engine.calls]


def test_the_lookups_before_the_start_overlap(engine: StartsHealthy) -> None:
    assert main(["up"]) == 0
    assert len(engine.lookups) == 3, engine.lookups  # container, volume, network
    last_start = max(start for start, _ in engine.lookups)
    first_end = min(end for _, end in engine.lookups)
    assert last_start < first_end, "each lookup waited for the one before"


class ChecksLate(StartsHealthy):
    """The engine's own check passes at its third poll; until then it says "starting"."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def health_of(self, container: str, info: Mapping[str, Any]) -> str:
        self.polls += 1
        return "healthy" if self.polls >= 3 else "starting"


def test_no_check_runs_in_the_container_before_jupyterlab_answers(
    engine: StartsHealthy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each in-container check is a Python started in the container: run every poll while
    JupyterLab starts, they took CPU from it on a 2-core host. Nothing answers on the
    workbench's JupyterLab port here, so `up` waits for the engine's own check."""
    late = ChecksLate()
    monkeypatch.setattr("torchrig.launch.session.engine_for", lambda session, name: late)
    assert main(["up"]) == 0
    checks = [c for c in late.called("exec") if c.args[1][:2] == ["/bin/sh", "-c"]]
    assert checks == [], f"{len(checks)} checks ran in the container"
    assert late.polls == 3
