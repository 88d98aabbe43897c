"""`torchrig export prometheus|grafana` through the CLI: the endpoint comes from the Plan
(the spec's metrics port on 127.0.0.1), the files are written where asked, and bad input is
one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchrig.cli.main import main
from torchrig.errors import HostError

HOST = Path(__file__).parents[1] / "fixtures" / "host" / "cpu-only.json"
SPEC = '[project]\nname = "demo"\n[services.metrics]\nport = 9555\n'


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise HostError("no engine in unit tests")

    monkeypatch.setattr("torchrig.launch.session.engine_for", refuse)


def _argv(tmp_path: Path, spec: str, fmt: str, *args: str) -> list[str]:
    (tmp_path / "torchrig.toml").write_text(spec)
    return ["export", fmt, "--spec", str(tmp_path / "torchrig.toml"), "--host", str(HOST), *args]


def test_prometheus_scrapes_the_plans_metrics_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _argv(tmp_path, SPEC, "prometheus", "--stdout", "--interval", "2",
                 "--target", "10.0.0.7:9400")  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert 'targets: ["127.0.0.1:9555"]' in text and 'targets: ["10.0.0.7:9400"]' in text
    assert "scrape_interval: 2s" in text and f'workbench: "{tmp_path.name}"' in text


def test_grafana_writes_the_provisioned_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "files"
    assert main(_argv(tmp_path, SPEC, "grafana", "-o", str(out))) == 0
    assert json.loads((out / "grafana/dashboards/torchrig.json").read_text())["panels"]
    assert (out / "grafana/provisioning/datasources/torchrig.yaml").is_file()
    assert (out / "grafana/provisioning/dashboards/torchrig.yaml").is_file()
    assert capsys.readouterr().out.count("wrote ") == 3


@pytest.mark.parametrize(
    ("spec", "args", "says"),
    [
        (SPEC.replace("port = 9555", "enabled = false"), (), "the metrics service is off"),
        (SPEC.replace("9555", "0"), (), "Prometheus needs a fixed one"),
        (SPEC, ("--target", "nohost"), "--target 'nohost' is not HOST:PORT"),
        (SPEC, ("--interval", "0"), "--interval 0 is not a number of seconds"),
        (SPEC, ("python", "x.py"), "export prometheus takes no command"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, args: tuple[str, ...],
    says: str,
) -> None:  # fmt: skip
    assert main(_argv(tmp_path, spec, "prometheus", "--stdout", *args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
