"""The system-wide cache every user of the machine reads: bootstrapped bases and wheels.

    /var/cache/torchrig   root:torchrig drwxrwsr-t (3775)
    ├── bases/            same; <distro>-<release>-<arch>-<date>.tar and .json
    └── wheels/           same; <sha[:2]>/<sha256>/<file>

`sudo torchrig prepare` makes it (group `torchrig`, created if missing) and fills it, once
for everyone: a normal user in the docker group then builds without root (debootstrap needs
root) and without downloading what another user already did. Per-user caches
(~/.cache/torchrig) stay the fallback.

Why the modes: setgid keeps every file in group torchrig, so members of the group can add
wheels; the sticky bit stops a member deleting or renaming files that others wrote. A cache
others can write is still a supply-chain risk, so nothing in it is trusted by location:

- a base tarball is used only when it and its record were written by root or by the user
  running torchrig, are writable by no one else, and the tarball's sha256, computed on
  every use, is the recorded one (see `trusted_file`);
- a wheel is used only when its sha256 is the lock's (pip --require-hashes checks it again
  inside the build).

TORCHRIG_SHARED_CACHE moves it (tests; machines where /var/cache is small).
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from torchrig.command import run_command
from torchrig.errors import HostError

SHARED_ENV = "TORCHRIG_SHARED_CACHE"
DEFAULT_ROOT = Path("/var/cache/torchrig")
GROUP = "torchrig"
DIR_MODE = 0o3775  # setgid + sticky, group-writable, world-readable
FILE_MODE = 0o644


def shared_root() -> Path:
    found = os.environ.get(SHARED_ENV, "").strip()
    return Path(found).expanduser() if found else DEFAULT_ROOT


def bases_dir() -> Path:
    return shared_root() / "bases"


def wheels_dir() -> Path:
    return shared_root() / "wheels"


def readable_dir(path: Path) -> bool:
    # is_dir raises on EACCES (a folder above it that this user cannot enter): not usable.
    try:
        return path.is_dir() and os.access(path, os.R_OK | os.X_OK)
    except OSError:
        return False


def writable_dir(path: Path) -> bool:
    return readable_dir(path) and os.access(path, os.W_OK)


def trusted_file(path: Path) -> bool:
    """A regular file (no link) that only root or this user can have written: owned by one
    of them and writable by neither its group nor others."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_uid in (0, os.geteuid())
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def make_readable(path: Path) -> None:
    """Files written into the shared cache are readable by every user, whatever the umask."""
    if path.is_relative_to(shared_root()):
        path.chmod(FILE_MODE)


def make_dirs(path: Path) -> None:
    """mkdir -p; folders made inside the shared cache get its mode, so other members of the
    group can add to them too."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        if folder.is_relative_to(shared_root()):
            folder.chmod(DIR_MODE)


def create(group: str = GROUP) -> list[str]:
    """Make the group and the folders (root only); return one line per change made."""
    if os.geteuid() != 0:
        raise HostError(
            f"creating the shared cache {shared_root()} needs root",
            "run `sudo torchrig prepare`",
        )
    changes: list[str] = []
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        done = run_command(["groupadd", "--system", group])
        if done.returncode != 0:
            raise HostError(
                f"cannot create the group {group}: {done.stderr.strip()}",
                f"create it by hand (groupadd --system {group}) and run prepare again",
            ) from None
        gid = grp.getgrnam(group).gr_gid
        changes.append(f"created the group {group} (members may add to the shared cache)")
    for folder in (shared_root(), bases_dir(), wheels_dir()):
        if not folder.is_dir():
            folder.mkdir(parents=True)
            changes.append(f"created {folder} (root:{group}, mode {DIR_MODE:o})")
        # chown first: it may clear the setgid bit that chmod then sets.
        os.chown(folder, 0, gid)
        folder.chmod(DIR_MODE)
    return changes
