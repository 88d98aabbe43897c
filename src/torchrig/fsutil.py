"""Writing files so that they are whole or absent, never half-written."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from torchrig.errors import DISK_ERRNOS, UsageError, disk_error


def write_atomically(target: Path, text: str) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder.

    mkstemp makes the file 0600; the files torchrig writes (spec, lock) are meant to be
    shared, so give them the mode a plain `open()` would (0666 less the umask), or keep the
    mode of the file being replaced.
    """
    try:
        mode = target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    folder = target.parent if str(target.parent) else Path()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise disk_error(exc, target) from None
        raise UsageError(
            f"cannot write in {folder} ({exc.strerror})", "check that the folder is writable"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        # A full disk shows up at write, flush, fsync or close: name the file, exit 4.
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            raise disk_error(exc, target) from None
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def writable_by(st: os.stat_result, uid: int, gid: int) -> bool:
    """Whether uid:gid (no supplementary groups, as in the workbench) may create files here."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        need = stat.S_IWUSR | stat.S_IXUSR
    elif st.st_gid == gid:
        need = stat.S_IWGRP | stat.S_IXGRP
    else:
        need = stat.S_IWOTH | stat.S_IXOTH
    return st.st_mode & need == need
