"""`torchrig plan`: golden text for recorded hosts, the JSON contract, and no side effects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden_util import GOLDEN, assert_golden
from torchrig.cli.main import main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "host"
HOSTS = {
    "h100": FIXTURES / "h100-sxm" / "host.json",
    "cpu-only": FIXTURES / "cpu-only.json",
}
SPECS = {
    "default": '[project]\nname = "demo"\n',
    "pinned-2.13": '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\n',
    "cpu-wheelhouse": (
        '[project]\nname = "cpu"\n[torch]\nversion = "2.13.0"\nvariant = "cpu"\n'
        'torchvision = false\n[python]\nversion = "3.11"\n'
        '[sources]\ntorch_index = "none"\nfind_links = ["/opt/wheels"]\n'
    ),
}


def _plan(tmp_path: Path, spec: str, host: str, *extra: str) -> list[str]:
    (tmp_path / "torchrig.toml").write_text(spec)
    return ["plan", "--spec", str(tmp_path / "torchrig.toml"), "--host", str(HOSTS[host]), *extra]


@pytest.mark.parametrize("host", sorted(HOSTS))
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_plan_text_is_golden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, host: str
) -> None:
    assert main(_plan(tmp_path, SPECS[spec], host)) == 0
    out = capsys.readouterr().out
    assert_golden(GOLDEN / "plan" / f"{spec}--{host}.txt", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["torchrig.toml"], "plan writes nothing"


def test_plan_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_plan(tmp_path, SPECS["default"], "h100", "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    r = data["resolution"]
    for key in ("torch", "variant", "index", "python", "base", "rejected", "reasons", "warnings"):
        assert key in r
    assert r["torch"] == "2.15.0" and r["variant"] == "cu130"
    assert r["index"] == "https://download.pytorch.org/whl/cu130"
    assert r["base"]["distribution"] == "ubuntu:noble"
    assert r["rejected"][0]["variant"] == "cu132" and r["rejected"][0]["reason"]
    assert data["lock"]["state"] == "missing"
    assert data["up"]["ports"] == {
        "jupyter": "127.0.0.1:8888", "ssh": "127.0.0.1:2222", "metrics": "127.0.0.1:9400",
    }  # fmt: skip


def test_plan_variant_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_plan(tmp_path, SPECS["default"], "h100", "--json", "--variant", "cu126")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["resolution"]["variant"] == "cu126"
    assert data["resolution"]["torch"] == "2.14.1"


def test_impossible_plan_exits_3_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = '[project]\nname = "demo"\n[torch]\nversion = "2.6"\nvariant = "cu130"\n'
    assert main(_plan(tmp_path, spec, "h100")) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "no PyTorch build fits" in err


@pytest.mark.parametrize(
    ("argv_tail", "code", "fragment"),
    [
        (["--spec", "/nonexistent/torchrig.toml"], 2, "no such file"),
        (["--variant"], 2, "expected one argument"),
        (["--host", "/nonexistent.json"], 2, "does not exist"),
        (["--bogus"], 2, "unrecognized arguments"),
    ],
)
def test_plan_bad_input(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv_tail: list[str],
    code: int,
    fragment: str,
) -> None:
    (tmp_path / "torchrig.toml").write_text(SPECS["default"])
    argv = ["plan", "--spec", str(tmp_path / "torchrig.toml"), "--host", str(HOSTS["h100"])]
    assert main([*argv, *argv_tail]) == code
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_plan_json_run_names_the_env_file_up_would_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run spec is what `up` runs: with a torchrig.env, up passes --env-file (a private
    copy of it), so the plan says so instead of leaving the secrets file out."""
    argv = _plan(tmp_path, SPECS["default"], "h100", "--json")
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["run"]["env_file"] is None
    (tmp_path / "torchrig.env").write_text("HF_TOKEN=never-printed\n")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["run"]["env_file"] == str(tmp_path / "torchrig.env")
    assert "never-printed" not in out
