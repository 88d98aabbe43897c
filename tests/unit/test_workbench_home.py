"""The home folder: root hands over only what is torchrig's; the user lays it out; the token."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from torchrig.workbench.home import HomeError, Layout, hand_over, lay_out, write_private
from torchrig.workbench.jupyter import MIN_HEX, ensure_token, new_token

UID, GID = 4242, 4343
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another UID needs root")


def owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@as_root
def test_first_start_on_an_empty_volume(tmp_path: Path) -> None:
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)
    layout = Layout(home)
    assert hand_over(layout, UID, GID) == 1
    assert owner(home) == (UID, GID)


@as_root
def test_no_volume_makes_the_home(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "home" / "alice")
    hand_over(layout, UID, GID)
    assert owner(layout.home) == (UID, GID)


@as_root
def test_only_torchrigs_entries_change_owner(tmp_path: Path) -> None:
    """A state volume made with another UID: torchrig's state follows, user data does not."""
    layout = Layout(tmp_path / "alice")
    for folder in (layout.ssh_state, layout.jupyter_state, layout.dot_ssh, layout.home / "data"):
        folder.mkdir(parents=True)
    files = [layout.token, layout.host_key("ed25519"), layout.authorized_keys]
    data = [layout.home / "data" / "big.bin", layout.home / ".bash_history", layout.dot_ssh / "id"]
    for path in files + data:
        path.write_text("x")
    for path in [*files, *data, layout.home, layout.state, layout.home / "data"]:
        os.chown(path, 1000, 1000)
    hand_over(layout, UID, GID)
    for path in [layout.home, layout.state, layout.ssh_state, layout.dot_ssh, *files]:
        assert owner(path) == (UID, GID), path
    for path in [*data, layout.home / "data"]:
        assert owner(path) == (1000, 1000), path
    # Nothing else to do the second time.
    assert hand_over(layout, UID, GID) == 0


@as_root
def test_symbolic_links_are_never_followed(tmp_path: Path) -> None:
    """A link the user planted must not make root chown what it points at."""
    victim = tmp_path / "etc"
    victim.mkdir()
    (victim / "shadow").write_text("root:*:\n")
    layout = Layout(tmp_path / "alice")
    layout.state.mkdir(parents=True)
    (layout.state / "ssh").symlink_to(victim)
    layout.dot_ssh.symlink_to(victim)
    (layout.state / "shadow-link").symlink_to(victim / "shadow")
    hand_over(layout, UID, GID)
    assert owner(victim) == (0, 0)
    assert owner(victim / "shadow") == (0, 0)
    assert owner(layout.dot_ssh) == (UID, GID)  # the link itself


def test_home_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "alice").write_text("not a folder")
    with pytest.raises(HomeError, match="must be a folder"):
        hand_over(Layout(tmp_path / "alice"), os.getuid(), os.getgid())
    (tmp_path / "bob").symlink_to(tmp_path)
    with pytest.raises(HomeError, match="must be a folder"):
        hand_over(Layout(tmp_path / "bob"), os.getuid(), os.getgid())


def test_lay_out_sets_the_modes_sshd_wants(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "alice")
    layout.home.mkdir(mode=0o777)
    layout.home.chmod(0o777)
    layout.dot_ssh.mkdir(mode=0o755)
    layout.dot_ssh.chmod(0o755)
    lay_out(layout)
    assert mode(layout.home) == 0o750
    for folder in (layout.state, layout.ssh_state, layout.jupyter_state, layout.dot_ssh):
        assert mode(folder) == 0o700, folder


def test_lay_out_refuses_a_file_where_a_folder_goes(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "alice")
    layout.home.mkdir()
    layout.state.write_text("oops")
    with pytest.raises(HomeError, match=r"\.torchrig must be a folder"):
        lay_out(layout)


def test_write_private_is_0600_and_whole(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


# --- the Jupyter token -----------------------------------------------------------------------


def test_token_strength() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert re.fullmatch(r"[0-9a-f]{64}", token)  # 256 bits, >= 192 asked
    assert MIN_HEX * 4 >= 192


def test_token_is_made_once_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token, made = ensure_token(path)
    assert made and path.read_bytes() == token.encode()  # Jupyter reads it without strip()
    assert mode(path) == 0o600
    assert ensure_token(path) == (token, False)


@pytest.mark.parametrize("content", ["", "short", "x" * 64, "DEADBEEF" * 8, "\xff\xfe"])
def test_a_weak_or_garbled_token_is_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content.encode("latin-1"))
    token, made = ensure_token(path)
    assert made and token != content and len(token) == 64


def test_a_kept_token_loses_its_newline_and_loose_mode(tmp_path: Path) -> None:
    path = tmp_path / "token"
    good = new_token()
    path.write_text(good + "\n")
    path.chmod(0o644)
    assert ensure_token(path) == (good, False)
    assert path.read_bytes() == good.encode() and mode(path) == 0o600
