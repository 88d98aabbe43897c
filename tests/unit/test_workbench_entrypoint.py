"""The entrypoint's steps on a folder: programs, session environment, the user phase with
stand-in sshd/ssh-keygen, capabilities, and the preflight notes."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from torchrig.workbench import entrypoint, preflight
from torchrig.workbench.entrypoint import SetupError
from torchrig.workbench.env import Settings
from torchrig.workbench.home import Layout
from torchrig.workbench.privileges import missing_capabilities

SECRET = "hf_secret_value"
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HF_TOKEN": SECRET,
    "CUDA_HOME": "/usr/local/cuda",
    "TORCHRIG_USER": "alice",
}


def test_check_programs_names_the_missing_one(tmp_path: Path) -> None:
    (tmp_path / "opt/venv/bin").mkdir(parents=True)
    jupyter = tmp_path / "opt/venv/bin/jupyter"
    jupyter.write_text("#!/bin/sh\n")
    jupyter.chmod(0o755)
    entrypoint.check_programs(("jupyter",), tmp_path)
    with pytest.raises(SetupError) as caught:
        entrypoint.check_programs(("jupyter", "tensorboard"), tmp_path)
    assert str(caught.value) == (
        "tensorboard is enabled (TORCHRIG_SERVICES) but /opt/venv/bin/tensorboard is not in "
        "this image; rebuild it with `torchrig build`, or turn tensorboard off in torchrig.toml"
    )
    assert caught.value.code == 78


def test_session_environment_has_no_secrets() -> None:
    env = entrypoint.session_environment(ENV)
    assert env == {
        "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "CUDA_HOME": "/usr/local/cuda",
    }
    profile = entrypoint.render_profile(env)
    assert SECRET not in profile
    assert "export PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin\n" in profile
    assert "export X='a b'\"'\"'c'\n" in entrypoint.render_profile({"X": "a b'c"})


def test_read_keys(tmp_path: Path) -> None:
    assert entrypoint.read_keys(tmp_path / "absent") is None
    (tmp_path / "keys").write_text("ssh-ed25519 AAAA\n")
    assert entrypoint.read_keys(tmp_path / "keys") == "ssh-ed25519 AAAA\n"
    (tmp_path / "huge").write_bytes(b"x" * (entrypoint.MAX_KEYS_BYTES + 1))
    with pytest.raises(SetupError, match="larger than 1 MiB"):
        entrypoint.read_keys(tmp_path / "huge")


def fake_tools(tmp_path: Path, sshd_ok: bool = True) -> tuple[str, str]:
    """sshd that reports 9.2 and accepts (or refuses) any config; the real ssh-keygen."""
    sshd = tmp_path / "bin" / "sshd"
    sshd.parent.mkdir()
    refuse = "" if sshd_ok else 'echo "line 7: Bad configuration option: Nope" >&2; exit 255'
    sshd.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-V" ]; then echo "OpenSSH_9.2p1 Debian-2, OpenSSL 3.0" >&2; exit 0; fi\n'
        f"{refuse}\nexit 0\n"
    )
    sshd.chmod(0o755)
    return str(sshd), shutil.which("ssh-keygen") or "ssh-keygen"


needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")


@needs_keygen
def test_user_phase_makes_keys_token_and_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path / "alice")
    layout.home.mkdir()
    settings = Settings("alice", os.getuid(), os.getgid(), ("jupyter", "ssh"), Path("/k"))
    sshd, keygen = fake_tools(tmp_path)
    keys = "# mine\nnot a key\n"
    entrypoint.as_user(settings, ENV, keys, layout, sshd_path=sshd, keygen=keygen)
    out, err = capsys.readouterr()
    assert stat.S_IMODE(layout.authorized_keys.stat().st_mode) == 0o600
    assert layout.authorized_keys.read_text() == "# mine\n"
    assert "authorized_keys line 2 skipped" in err
    assert "ssh: 0 authorized key(s) for alice" in out
    assert "host key ed25519 SHA256:" in out and "(made now)" in out
    config = layout.sshd_config.read_text()
    assert "AllowUsers alice" in config and "PerSourcePenalties" not in config
    assert SECRET not in config
    token = layout.token.read_text()
    assert len(token) == 64 and token not in out + err
    assert "jupyter: token made" in out
    # Second start: keys and token kept.
    key_before = layout.host_key("ed25519").read_bytes()
    entrypoint.as_user(settings, ENV, keys, layout, sshd_path=sshd, keygen=keygen)
    out, _ = capsys.readouterr()
    assert "(kept)" in out and "jupyter: token kept" in out
    assert layout.host_key("ed25519").read_bytes() == key_before
    assert layout.token.read_text() == token


@needs_keygen
def test_missing_keys_file_leaves_an_empty_authorized_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = Layout(tmp_path / "alice")
    layout.home.mkdir()
    layout.dot_ssh.mkdir()
    layout.authorized_keys.write_text("ssh-ed25519 an old key that must not linger\n")
    settings = Settings("alice", os.getuid(), os.getgid(), ("ssh",), Path("/run/none"))
    sshd, keygen = fake_tools(tmp_path)
    entrypoint.as_user(settings, ENV, None, layout, sshd_path=sshd, keygen=keygen)
    assert layout.authorized_keys.read_text() == ""
    assert "no /run/none: nobody can log in over ssh" in capsys.readouterr().err


@needs_keygen
def test_a_config_sshd_rejects_stops_the_start(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "alice")
    layout.home.mkdir()
    settings = Settings("alice", os.getuid(), os.getgid(), ("ssh",), Path("/k"))
    sshd, keygen = fake_tools(tmp_path, sshd_ok=False)
    with pytest.raises(SetupError, match=r"sshd rejects .*Bad configuration option: Nope"):
        entrypoint.as_user(settings, ENV, "", layout, sshd_path=sshd, keygen=keygen)


STATUS = "Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t{caps}\nCapBnd:\t00000000000000ff\n"


@pytest.mark.parametrize(
    ("caps", "missing"),
    [
        ("00000000000000eb", []),  # CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID
        ("00000000000000cb", ["KILL"]),  # what the run plan had: no KILL
        ("0000000000000000", ["CHOWN", "KILL", "SETGID", "SETUID"]),
    ],
)
def test_capabilities(tmp_path: Path, caps: str, missing: list[str]) -> None:
    status = tmp_path / "status"
    status.write_text(STATUS.format(caps=caps))
    assert missing_capabilities(("CHOWN", "KILL", "SETGID", "SETUID"), status) == missing


def test_missing_kill_is_a_warning_missing_setuid_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = tmp_path / "status"
    status.write_text(STATUS.format(caps="00000000000000cb"))
    entrypoint.check_capabilities(status)
    assert "lacks CAP_KILL" in capsys.readouterr().err
    status.write_text(STATUS.format(caps="0000000000000021"))
    with pytest.raises(SetupError, match="lacks capabilities SETGID, SETUID"):
        entrypoint.check_capabilities(status)


# --- preflight -------------------------------------------------------------------------------


def test_shm_note_at_the_default_only() -> None:
    note = preflight.shm_note(64 * 1024 * 1024)
    assert note is not None
    assert note.startswith("NOTE: The SHMEM allocation limit is set to the default of 64 MiB.")
    assert preflight.shm_note(8 << 30) is None
    assert preflight.shm_note(None) is None


def test_driver_warning_only_for_a_cuda_image_without_a_driver(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "etc/torchrig").mkdir(parents=True)
    (tmp_path / "etc/torchrig/image.json").write_text('{"io.torchrig.cuda": "12.8"}')
    notes = preflight.notes(tmp_path)
    assert any(n.startswith("WARNING: The NVIDIA Driver was not detected.") for n in notes)
    (tmp_path / "dev/nvidia0").write_text("")
    assert not any("NVIDIA" in n for n in preflight.notes(tmp_path))
    (tmp_path / "dev/nvidia0").unlink()
    (tmp_path / "etc/torchrig/image.json").write_text('{"io.torchrig.cuda": "none"}')
    assert not any("NVIDIA" in n for n in preflight.notes(tmp_path))
