"""An export option given to a format that does not read it is refused, never dropped.

`export compose --nodes 4` once wrote a one-node compose file and exited 0: the person
believed their option had been applied.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrig.cli.main import main

HOST = Path(__file__).parents[1] / "fixtures" / "host" / "cpu-only.json"


@pytest.mark.parametrize(
    ("fmt", "option", "readers"),
    [
        ("compose", ["--nodes", "4"], "kubernetes, slurm, apptainer"),
        ("devcontainer", ["--gpus-per-node", "2"], "kubernetes, slurm, apptainer"),
        ("compose", ["--image", "r/x@sha256:" + "a" * 64], "kubernetes, slurm, apptainer"),
        ("kubernetes", ["--runtime", "podman"], "slurm, apptainer"),
        ("compose", ["--interval", "9"], "prometheus, grafana"),
        ("grafana", ["--run", "runs/a"], "serving"),
    ],
)
def test_an_option_the_format_ignores_is_one_line_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    option: list[str],
    readers: str,
) -> None:
    (tmp_path / "torchrig.toml").write_text('[project]\nname = "demo"\n')
    argv = ["export", fmt, *option, "--spec", str(tmp_path / "torchrig.toml"),
            "--host", str(HOST), "--stdout"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"export {fmt} does not use {option[0]}" in err
    assert f"read by export {readers}" in err
    assert not any(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == ["torchrig.toml"]
