"""Secrets from torchrig.env reach ssh login shells through a 0600 file on /dev/shm, never
the image, the state volume or a log (issue 11, item 4)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from torchrig.workbench import entrypoint, session_env

ENV = {
    "PATH": "/opt/venv/bin:/usr/bin:/bin",
    "HF_TOKEN": "hf_s3cr3t $(touch /tmp/x) 'q'",
    "WANDB_API_KEY": "w",
    "HOME": "/root",
    "TORCHRIG_UID": "4242",
    "JUPYTER_TOKEN": "t",
    "SSH_AUTH_SOCK": "/tmp/a",
    "not-a-name": "x",
}


def test_what_login_shells_carry() -> None:
    already = {"PATH": ENV["PATH"]}
    assert session_env.carried(ENV, already) == {
        "HF_TOKEN": ENV["HF_TOKEN"],
        "WANDB_API_KEY": "w",
    }


def test_the_file_is_private_and_the_profile_sources_it(tmp_path: Path) -> None:
    uid = os.getuid()
    value = f"hf_s3cr3t $(touch {tmp_path}/ran) 'q' \"x\""
    path = session_env.write({"HF_TOKEN": value}, uid, shm=tmp_path)
    assert path is not None and path.parent == tmp_path / f".torchrig-{uid}"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    profile = tmp_path / "profile.sh"
    profile.write_text("\n".join(session_env.profile_lines(shm=tmp_path)) + "\n")
    # A real login-style shell: the value arrives intact and nothing in it runs.
    done = subprocess.run(
        ["sh", "-c", f'. {profile} && printf %s "$HF_TOKEN"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == value
    assert not (tmp_path / "ran").exists()


def test_a_restart_rewrites_it_and_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    uid = os.getuid()
    assert session_env.write({"A": "1"}, uid, shm=tmp_path) is not None
    assert session_env.write({"A": "2"}, uid, shm=tmp_path) is not None
    assert "export A=2" in (tmp_path / f".torchrig-{uid}" / "environment.sh").read_text()
    other = tmp_path / "elsewhere"
    other.mkdir()
    (tmp_path / ".torchrig-99999").symlink_to(other)
    assert session_env.write({"A": "3"}, 99999, shm=tmp_path) is None
    assert list(other.iterdir()) == []


def test_the_profile_names_no_secret() -> None:
    profile = entrypoint.render_profile(entrypoint.session_environment(ENV))
    assert "hf_s3cr3t" not in profile and "/dev/shm/.torchrig-$(id -u)/environment.sh" in profile
