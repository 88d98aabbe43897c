"""The user's home (the state volume) and what torchrig keeps in it.

    ~/                      0750  the state volume: shell history, caches, your files
    ~/.ssh/                 0700
    ~/.ssh/authorized_keys  0600  rewritten from TORCHRIG_AUTHORIZED_KEYS_FILE at each start
    ~/.torchrig/            0700  torchrig's own state
      ssh/                  0700  host keys (made once), sshd_config, sshd.pid
      jupyter/token         0600  JupyterLab's token (made once)

Two phases, because root must do as little as possible in a folder the user can write:

- `hand_over` (root): chown the home folder itself, and torchrig's own entries when their
  owner is not the user yet (a first start, or a state volume made with another UID). It
  never follows a symbolic link and never descends into user data; it changes no modes.
- `lay_out` (the user, after the drop): folders and modes. A symbolic link planted by the
  user is theirs to keep; root never acted on it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def state(self) -> Path:
        return self.home / ".torchrig"

    @property
    def ssh_state(self) -> Path:
        return self.state / "ssh"

    @property
    def sshd_config(self) -> Path:
        return self.ssh_state / "sshd_config"

    @property
    def sshd_pid(self) -> Path:
        return self.ssh_state / "sshd.pid"

    def host_key(self, kind: str) -> Path:
        return self.ssh_state / f"ssh_host_{kind}_key"

    @property
    def jupyter_state(self) -> Path:
        return self.state / "jupyter"

    @property
    def token(self) -> Path:
        return self.jupyter_state / "token"

    @property
    def dot_ssh(self) -> Path:
        return self.home / ".ssh"

    @property
    def authorized_keys(self) -> Path:
        return self.dot_ssh / "authorized_keys"


class HomeError(RuntimeError):
    """The home folder cannot be used; str() is one line."""


def _lchown(path: Path, uid: int, gid: int, st: os.stat_result) -> bool:
    if (st.st_uid, st.st_gid) == (uid, gid):
        return False
    os.chown(path, uid, gid, follow_symlinks=False)
    return True


def hand_over(layout: Layout, uid: int, gid: int) -> int:
    """As root: give the user its home and torchrig's entries in it. Returns how many changed."""
    home = layout.home
    try:
        st = home.lstat()
    except FileNotFoundError:
        # No state volume mounted: a home in the container's own file system.
        home.mkdir(mode=0o750, parents=True)
        st = home.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{home} must be a folder (the state volume), but it is not")
    changed = int(_lchown(home, uid, gid, st))
    for top in (layout.state, layout.dot_ssh):
        try:
            st = top.lstat()
        except FileNotFoundError:
            continue
        changed += _lchown(top, uid, gid, st)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            continue
        if top == layout.dot_ssh:
            entries = [layout.authorized_keys]
        else:
            entries = []
            for folder, dirs, files in os.walk(top, followlinks=False):
                entries += [Path(folder) / n for n in (*dirs, *files)]
        for entry in entries:
            try:
                changed += _lchown(entry, uid, gid, entry.lstat())
            except FileNotFoundError:
                continue
    return changed


def _ensure_dir(path: Path, mode: int) -> None:
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode)
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return  # the user's own arrangement
    if not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{path} must be a folder; move the file away and start again")
    if stat.S_IMODE(st.st_mode) != mode:
        path.chmod(mode)


def lay_out(layout: Layout) -> None:
    """As the user: the folders torchrig uses, with the modes sshd's StrictModes wants."""
    if stat.S_IMODE(layout.home.stat().st_mode) != 0o750:
        layout.home.chmod(0o750)
    for folder in (layout.state, layout.ssh_state, layout.jupyter_state, layout.dot_ssh):
        _ensure_dir(folder, 0o700)


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Whole or absent, mode `mode` from the first byte on (never briefly readable by others)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
