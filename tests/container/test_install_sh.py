"""README's main command, `bash install.sh PROJECT`, as root on this machine (issue 11).

What a person on a rented GPU server types first. From a fresh venv (TORCHRIG_VENV in this
test's folder, so nothing of the machine's is reused) install.sh installs torchrig, finds
the spec already there (a CPU one: no GPU here), installs nothing else (the engine and
debootstrap are present), and `torchrig up` ends with a healthy workbench in a folder that
install.sh itself made as root. Before issue 11 this stopped at once with "the workspace …
(0:0, mode 0755) is not writable by the workbench user rig (uid 1000)".
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.container.test_first_run_root import spec

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.geteuid() != 0, reason="the root flow; CI runs as root")
def test_install_sh_as_root_ends_with_a_healthy_workbench(tmp_path: Path) -> None:
    project = tmp_path / "myproject"
    project.mkdir()
    (project / "torchrig.toml").write_text(spec("t-install-sh", 18973))
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "TORCHRIG_VENV": str(tmp_path / "venv"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    try:
        done = subprocess.run(
            ["bash", str(REPO / "install.sh"), str(project)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}"
        assert "torchrig-t-install-sh is up" in done.stdout, done.stdout
        assert "JupyterLab  http://127.0.0.1:" in done.stdout, done.stdout
        assert (project.stat().st_uid, project.stat().st_gid) == (0, 0)
        assert "apt-get" not in done.stdout  # nothing was missing here
    finally:
        subprocess.run(
            [str(tmp_path / "venv" / "bin" / "torchrig"), "down", "--purge", "--spec",
             str(project / "torchrig.toml")],
            env=env, capture_output=True, check=False, timeout=300,
        )  # fmt: skip
