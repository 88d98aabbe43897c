"""`torchrig init` and `torchrig schema` through the real entry point, main().

What a person sees: exit codes, one-line errors without tracebacks, the file written.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from torchrig.cli.main import main
from torchrig.host.facts import Driver, Gpu, HostFacts, System
from torchrig.spec.load import load_spec, parse_spec
from torchrig.spec.model import Project, Spec, Torch

if TYPE_CHECKING:
    pass

# Facts of a saved CPU-only host: a spec-reading verb runs without probing this machine.
CPU_HOST = Path(__file__).parents[1] / "fixtures" / "host" / "cpu-only.json"


def gpu_host() -> HostFacts:
    return HostFacts(
        system=System(os="Ubuntu 24.04.3 LTS", cpus=16, memory_bytes=128 << 30),
        driver=Driver(version="580.159.04", cuda="13.0"),
        gpus=[Gpu(index=0, name="NVIDIA H100 80GB HBM3", cc="9.0", memory_mib=81559)],
    )


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "host.json"
    path.write_text(gpu_host().to_json())
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "My Project"
    folder.mkdir()
    return folder


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


# --- init ----------------------------------------------------------------------------------


def test_init_writes_a_spec_that_loads(
    project: Path, host_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--dir", str(project), "--host", str(host_file)]) == 0
    target = project / "torchrig.toml"
    spec = load_spec(target)
    assert spec == Spec(project=Project(name="my-project"))  # named after the folder
    text = target.read_text()
    assert "GPU 0: NVIDIA H100 80GB HBM3" in text
    out = capsys.readouterr().out
    assert f"wrote {target}" in out
    assert "torchrig plan" in out and f"--host {host_file}" in out
    assert sorted(p.name for p in project.iterdir()) == ["torchrig.toml"]  # no temp files


def test_init_writes_in_the_current_folder_by_default(
    project: Path, host_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    assert main(["init", "--host", str(host_file), "--name", "other"]) == 0
    assert load_spec(project / "torchrig.toml").project.name == "other"


def test_init_file_mode_follows_the_umask(project: Path, host_file: Path) -> None:
    old = os.umask(0o022)
    try:
        assert main(["init", "--dir", str(project), "--host", str(host_file)]) == 0
    finally:
        os.umask(old)
    assert (project / "torchrig.toml").stat().st_mode & 0o777 == 0o644


def test_init_refuses_to_overwrite(
    project: Path, host_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = project / "torchrig.toml"
    target.write_text("# mine\n")
    assert main(["init", "--dir", str(project), "--host", str(host_file)]) == 2
    assert target.read_text() == "# mine\n"
    line = one_error_line(capsys.readouterr().err)
    assert "already exists" in line and "--force" in line
    assert sorted(p.name for p in project.iterdir()) == ["torchrig.toml"]


def test_init_force_overwrites_and_keeps_the_mode(project: Path, host_file: Path) -> None:
    target = project / "torchrig.toml"
    target.write_text("# mine\n")
    target.chmod(0o640)
    assert main(["init", "--force", "--dir", str(project), "--host", str(host_file)]) == 0
    assert parse_spec(target.read_text()).project.name == "my-project"
    assert target.stat().st_mode & 0o777 == 0o640


def test_init_probes_this_machine_without_engines(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []

    def probe_host(engines: bool = True) -> HostFacts:
        calls.append(engines)
        return HostFacts(system=System(os="Debian GNU/Linux 12 (bookworm)", cpus=4))

    fake = types.ModuleType("torchrig.host.probe")
    fake.probe_host = probe_host  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchrig.host.probe", fake)
    assert main(["init", "--dir", str(project)]) == 0
    assert calls == [False]
    assert "no NVIDIA GPU found" in (project / "torchrig.toml").read_text()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--name", "Bad Name"], "--name: "),
        (["--dir", "does-not-exist"], "is not a folder"),
        (["--host", "no-such-host.json"], "does not exist"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_init_usage_errors_are_one_line(
    extra: list[str],
    says: str,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(project)
    args = ["init", *extra]
    if "--host" not in extra:
        args += ["--host", str(project.parent / "host.json")]
        (project.parent / "host.json").write_text(gpu_host().to_json())
    assert main(args) == 2
    assert says in one_error_line(capsys.readouterr().err)
    assert not (project / "torchrig.toml").exists()


# --- schema --------------------------------------------------------------------------------


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "torchrig.toml"
    assert set(schema["properties"]) == set(Spec.model_fields)
    assert schema["required"] == ["project"]
    assert schema["additionalProperties"] is False
    variant = schema["$defs"]["Torch"]["properties"]["variant"]
    assert variant["description"] == Torch.model_fields["variant"].description
    assert variant["default"] == "auto"


# --- a broken spec through a verb ----------------------------------------------------------


def test_spec_error_through_a_verb_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "torchrig.toml"
    spec.write_text('[project]\nname = "x"\n[torch]\nversoin = "2.9"\n')
    assert main(["plan", "--spec", str(spec), "--host", str(CPU_HOST)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f'error: {spec}:4: torch.versoin: unknown key — did you mean "version"?'


def test_spec_error_with_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none")
    assert main(["--debug", "plan", "--spec", missing, "--host", str(CPU_HOST)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_a_good_spec_through_a_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "torchrig.toml"
    spec.write_text('[project]\nname = "x"\n[torch]\nvariant = "cpu"\n')
    assert main(["plan", "--spec", str(spec), "--host", str(CPU_HOST), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["project"] == "x"
