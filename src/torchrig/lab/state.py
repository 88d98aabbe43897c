"""The lab's state folder and the rule that keeps the root-run hub safe.

JupyterHub runs as root on the host (DockerSpawner needs the Docker socket, which is root's
power whoever holds it), so SECURITY.md's rule applies in full: no root process reads or
imports anything a user can write. Everything the hub reads (its config, database, secrets,
the users' public keys, the TLS files) lives in a 0700 folder of root's, and `check_trusted`
refuses a path that anyone but its owner (root, or the admin running torchrig) could change,
or that sits in such a folder.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically
from torchrig.launch.local import state_path


@dataclass(frozen=True)
class LabState:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "jupyterhub_config.py"

    @property
    def database(self) -> Path:
        return self.root / "jupyterhub.sqlite"

    @property
    def cookie_secret(self) -> Path:
        return self.root / "cookie_secret"

    @property
    def service_token(self) -> Path:
        return self.root / "service_token"

    @property
    def proxy_token(self) -> Path:
        return self.root / "proxy_token"

    @property
    def hub_pid(self) -> Path:
        return self.root / "jupyterhub.pid"

    @property
    def proxy_pid(self) -> Path:
        return self.root / "proxy.pid"

    @property
    def log(self) -> Path:
        return self.root / "hub.log"

    @property
    def gpus(self) -> Path:
        return self.root / "gpus.json"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    def keys_file(self, user: str) -> Path:
        return self.keys / user

    def make(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)
        # Keys are read by the containers' entrypoint as root (DAC_READ_SEARCH): 0700 is enough.
        self.keys.mkdir(mode=0o700, exist_ok=True)

    def secret(self, path: Path) -> str:
        """A 256-bit secret made once and kept (0600): restarts keep sessions and tokens."""
        if path.exists():
            return path.read_text().strip()
        value = secrets.token_hex(32)
        write_private(path, value)
        return value


def lab_state(project: str) -> LabState:
    return LabState(state_path(project) / "lab")


def write_private(path: Path, text: str) -> None:
    write_atomically(path, text)
    path.chmod(0o600)


def _writable_by_others(info: os.stat_result, owner_ok: set[int]) -> str | None:
    if info.st_uid not in owner_ok:
        return f"belongs to uid {info.st_uid}"
    mode = stat.S_IMODE(info.st_mode)
    sticky_dir = stat.S_ISDIR(info.st_mode) and mode & stat.S_ISVTX
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky_dir:
        return f"is writable by {'others' if mode & stat.S_IWOTH else 'its group'}"
    return None


def check_trusted(path: Path, what: str, *, uid: int | None = None) -> None:
    """UsageError unless `path` and every folder above it can be changed only by root or
    `uid` (default: whoever runs torchrig). A sticky folder (/tmp) is fine above it."""
    owner_ok = {0, os.geteuid() if uid is None else uid}
    real = path.resolve()
    for index, item in enumerate([real, *real.parents]):
        try:
            info = item.lstat()
        except FileNotFoundError:
            continue
        problem = _writable_by_others(info, owner_ok)
        if problem is None:
            continue
        # A sticky folder's entries can't be renamed by others: above it, only ownership counts.
        if index > 0 and problem.startswith("is writable") and stat.S_IMODE(info.st_mode) & 0o1000:
            continue
        where = "" if index == 0 else f" (the folder {item} above it {problem})"
        raise UsageError(
            f"{what} {path} {problem if index == 0 else 'is not safe'}{where}: the hub runs as "
            "root and must never read a file another user can change",
            f"chown root and chmod go-w {item}",
        )
