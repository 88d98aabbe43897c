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


# Opening a folder of the state volume as root: never through a symbolic link, never a
# FIFO or device that could block, never a controlling terminal.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _give(dir_fd: int, name: str, uid: int, gid: int) -> tuple[bool, os.stat_result | None]:
    """fchownat(dir_fd, name, AT_SYMLINK_NOFOLLOW) unless it is the user's already.

    By a folder's descriptor and a plain name, so a folder the user swaps for a link between
    two calls is never walked through. A file with several hard links is left alone: the
    other name may be one the user must not own. Returns (changed, its lstat or None).
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False, None
    if (st.st_uid, st.st_gid) == (uid, gid):
        return False, st
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        return False, st
    os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    return True, st


def _open_dir(name: str, dir_fd: int, st: os.stat_result) -> int | None:
    """The folder `name` in dir_fd, if it is still the one just looked at (not a link)."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None  # a link (ELOOP), not a folder any more, or gone: nothing to descend into
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        return None
    return fd


def _give_tree(dir_fd: int, uid: int, gid: int) -> int:
    changed = 0
    for name in sorted(os.listdir(dir_fd)):
        done, st = _give(dir_fd, name, uid, gid)
        changed += done
        if st is not None and stat.S_ISDIR(st.st_mode):
            fd = _open_dir(name, dir_fd, st)
            if fd is not None:
                try:
                    changed += _give_tree(fd, uid, gid)
                finally:
                    os.close(fd)
    return changed


def hand_over(layout: Layout, uid: int, gid: int) -> int:
    """As root: give the user its home and torchrig's entries in it. Returns how many changed.

    Everything below the home goes by descriptors (openat with O_NOFOLLOW, fchownat with
    AT_SYMLINK_NOFOLLOW): the user can write the home, and may change it meanwhile (a
    `torchrig run --fresh` container starts while the workbench runs on the same volume).
    """
    home = layout.home
    try:
        st = home.lstat()
    except FileNotFoundError:
        # No state volume mounted: a home in the container's own file system.
        home.mkdir(mode=0o750, parents=True)
        st = home.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{home} must be a folder (the state volume), but it is not")
    parent = os.open(home.parent, _DIR_FLAGS)
    try:
        done, st_home = _give(parent, home.name, uid, gid)
        home_fd = _open_dir(home.name, parent, st_home) if st_home else None
    finally:
        os.close(parent)
    if home_fd is None:
        raise HomeError(f"{home} must be a folder (the state volume), but it is not")
    changed = int(done)
    try:
        for top in (layout.state, layout.dot_ssh):
            done, st_top = _give(home_fd, top.name, uid, gid)
            changed += done
            if st_top is None or not stat.S_ISDIR(st_top.st_mode):
                continue
            fd = _open_dir(top.name, home_fd, st_top)
            if fd is None:
                continue
            try:
                if top == layout.dot_ssh:
                    changed += _give(fd, layout.authorized_keys.name, uid, gid)[0]
                else:
                    changed += _give_tree(fd, uid, gid)
            finally:
                os.close(fd)
    finally:
        os.close(home_fd)
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
