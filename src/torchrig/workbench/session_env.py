"""The container's variables for ssh login shells, the env file's secrets among them.

sshd starts each session with a fresh environment: the image's own variables reach it
through sshd_config's SetEnv (entrypoint.SESSION_ENV), but secrets (HF_TOKEN, WANDB_API_KEY
from torchrig.env) must never be written to the image, the state volume or a log. So the
entrypoint, as the user, writes them to a 0600 file in a 0700 folder on /dev/shm, a tmpfs
that lives and dies with the container, and /etc/profile.d/torchrig.sh sources it in login
shells (`ssh HOST`, `ssh -t HOST bash -l`, and the tmux sessions started from them).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Mapping
from pathlib import Path

SHM = Path("/dev/shm")
FILE_NAME = "environment.sh"
# Set per session by sshd, login or the shell, or torchrig's own: never carried over.
PER_SESSION = frozenset(
    {"HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "SHLVL", "HOSTNAME", "TERM", "MAIL", "_"}
)
PRIVATE_PREFIXES = ("TORCHRIG_", "SSH_", "JUPYTER_TOKEN")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def folder(uid: int, shm: Path = SHM) -> Path:
    return shm / f".torchrig-{uid}"


def carried(environ: Mapping[str, str], already: Mapping[str, str]) -> dict[str, str]:
    """What a login shell should get beyond `already` (the SetEnv variables)."""
    return {
        k: v
        for k, v in environ.items()
        if NAME.fullmatch(k)
        and k not in PER_SESSION
        and k not in already
        and not k.startswith(PRIVATE_PREFIXES)
    }


def render(env: Mapping[str, str]) -> str:
    lines = [
        "# Written by torchrig at each start, for this user's login shells only; a tmpfs",
        "# (never the image, the state volume or a log). Gone when the container stops.",
        *(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())),
    ]
    return "\n".join(lines) + "\n"


def write(env: Mapping[str, str], uid: int, shm: Path = SHM) -> Path | None:
    """Write the file as the user; None when /dev/shm cannot hold it (then say so)."""
    where = folder(uid, shm)
    try:
        try:
            where.mkdir(mode=0o700)
        except FileExistsError:
            st = where.lstat()  # a restart: ours from the last start, never a symlink
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                return None
            where.chmod(0o700)
        path = where / FILE_NAME
        fd = os.open(
            where / f".{FILE_NAME}.new",
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render(env))
        (where / f".{FILE_NAME}.new").replace(path)
    except OSError:
        return None
    return path


def profile_lines(shm: Path = SHM) -> list[str]:
    """What /etc/profile.d/torchrig.sh adds: source the file if this user owns it."""
    path = f"{folder(0, shm).parent}/.torchrig-$(id -u)/{FILE_NAME}"
    return [
        "# The container's other variables (an env file's secrets among them), for this user",
        "# only, from a 0600 file on the /dev/shm tmpfs that the entrypoint writes at start.",
        f'_torchrig_env="{path}"',
        '[ -O "$_torchrig_env" ] && . "$_torchrig_env"',
        "unset _torchrig_env",
    ]
