"""With --host FILE the build still runs here: the engine comes from this machine."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from torchrig.cli.common import session_from
from torchrig.errors import HostError
from torchrig.host import probe
from torchrig.host.facts import Engine
from torchrig.launch.session import Session, engine_for

H100 = Path(__file__).parents[1] / "fixtures" / "host" / "h100-sxm" / "host.json"


def _session(tmp_path: Path, host: Path | None) -> Session:
    spec = tmp_path / "torchrig.toml"
    spec.write_text('[project]\nname = "p"\n[torch]\nversion = "2.13.0"\n')
    return session_from(argparse.Namespace(spec=spec, host=host))


def test_a_host_file_without_engines_still_builds_with_this_machines_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed: list[str] = []

    def fake_probe(name: str, **_: object) -> tuple[Engine, list[str]]:
        probed.append(name)
        return Engine(name=name, path=f"/usr/bin/{name}", reachable=True), []  # type: ignore[arg-type]

    monkeypatch.setattr(probe, "probe_engine", fake_probe)
    session = _session(tmp_path, H100)
    assert not any(e.reachable for e in session.host.engines)
    engine = engine_for(session, "docker")
    assert engine.name == "docker" and probed == ["docker"]


def test_this_machines_missing_engine_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_probe(name: str, **_: object) -> tuple[Engine, list[str]]:
        return Engine(name=name), []  # type: ignore[arg-type]

    monkeypatch.setattr(probe, "probe_engine", fake_probe)
    with pytest.raises(HostError, match="podman is not installed"):
        engine_for(_session(tmp_path, H100), "podman")
