"""install.sh as a normal user with no sudo: one line naming what an administrator runs.

Before, a user in the docker group on a machine without sudo got "install.sh: line 24:
sudo: command not found" (exit 127) when a package was missing. The user here is faked
(`id` says 1000) and so is the missing package (python3 without venv), so nothing is run
as root and nothing is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_user_without_sudo_gets_one_line_naming_the_apt_command(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    fakes = {"id": "echo 1000", "python3": "exit 1"}  # python3 lacks venv and ensurepip
    for name, body in fakes.items():
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(0o755)
    for name in ("dirname",):  # what install.sh runs before it installs anything
        found = shutil.which(name)
        assert found is not None
        (tools / name).symlink_to(found)
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, str(REPO / "install.sh"), str(tmp_path / "myproject")],
        env={"PATH": str(tools), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        "install.sh: installing python3-venv needs root and this account has no sudo; ask an "
        "administrator to run: apt-get install -y python3-venv; then run this again"
    ]
    assert not (tmp_path / "myproject").exists()
