"""The settings `torchrig up` gives the container, read and checked from its environment.

Every problem is one line, naming the variable, what it must be and what it was; the
entrypoint prints it and exits with EX_USAGE (64). Values are shown quoted as JSON strings,
so an empty or odd value is visible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torchrig import contract

SERVICES = ("jupyter", "ssh", "tensorboard", "metrics")
PORTS = {"jupyter": 8888, "ssh": 2222, "tensorboard": 6006, "metrics": 9400}
DEFAULT_SERVICES = ("jupyter", "ssh")
DEFAULT_KEYS_FILE = contract.KEYS_FILE
ID_MIN, ID_MAX = 1, 2147483646
# Debian's useradd accepts more, but this is what the spec accepts, and it is safe in every
# file and command line it ends up in (passwd, sshd_config's AllowUsers, /home/NAME).
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
DIGITS_RE = re.compile(r"[0-9]{1,10}")

EX_USAGE = 64
"""Bad or missing TORCHRIG_* values."""
EX_SOFTWARE = 70
"""The supervisor gave up on a service that kept crashing; an unexpected error."""
EX_CONFIG = 78
"""The image or the state volume cannot give what was asked (missing program, bad sshd config)."""


class EnvError(ValueError):
    """A bad or missing setting; str() is the whole message, one line."""


@dataclass(frozen=True)
class Settings:
    user: str
    uid: int
    gid: int
    services: tuple[str, ...]
    authorized_keys_file: Path

    @property
    def home(self) -> Path:
        return Path("/home") / self.user


def _shown(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def parse_id(name: str, environ: Mapping[str, str]) -> int:
    value = environ.get(name)
    rule = f"{name} must be a number between {ID_MIN} and {ID_MAX}"
    if value is None:
        raise EnvError(f"{rule}, but it is not set (torchrig up sets it to the host user's)")
    # Only ASCII digits: int() would also take " 42", "4_2", "+42" and "٤٢".
    if not DIGITS_RE.fullmatch(value):
        raise EnvError(f"{rule}, got {_shown(value)}")
    number = int(value)
    if number == 0:
        raise EnvError(f"{rule}, got 0 (root): the workbench never runs as root")
    if not ID_MIN <= number <= ID_MAX:
        raise EnvError(f"{rule}, got {_shown(value)}")
    return number


def parse_user(environ: Mapping[str, str]) -> str:
    value = environ.get("TORCHRIG_USER")
    if not value:
        raise EnvError(
            "TORCHRIG_USER must name the workbench user, but it is "
            + ("empty" if value == "" else "not set")
        )
    if value == "root":
        raise EnvError('TORCHRIG_USER must not be "root": the workbench never runs as root')
    if not USER_RE.fullmatch(value):
        raise EnvError(
            "TORCHRIG_USER must be a user name (lower case letters, digits, _ and -, starting "
            f"with a letter or _, at most 32 characters), got {_shown(value)}"
        )
    return value


def parse_services(environ: Mapping[str, str]) -> tuple[str, ...]:
    value = environ.get("TORCHRIG_SERVICES")
    if value is None:
        return DEFAULT_SERVICES
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise EnvError(
            f"TORCHRIG_SERVICES must be a comma list of {', '.join(SERVICES)}, "
            f"got {_shown(value)} ({_shown(unknown[0])} is not one)"
        )
    # Keep the canonical order, drop repeats.
    return tuple(s for s in SERVICES if s in names)


def parse_keys_file(environ: Mapping[str, str]) -> Path:
    value = environ.get("TORCHRIG_AUTHORIZED_KEYS_FILE", DEFAULT_KEYS_FILE)
    if not value.startswith("/"):
        raise EnvError(
            f"TORCHRIG_AUTHORIZED_KEYS_FILE must be an absolute path, got {_shown(value)}"
        )
    return Path(value)


def parse(environ: Mapping[str, str]) -> Settings:
    """The settings, or EnvError for the first problem (in the order a person fixes them)."""
    user = parse_user(environ)
    uid = parse_id("TORCHRIG_UID", environ)
    gid = parse_id("TORCHRIG_GID", environ)
    return Settings(
        user=user,
        uid=uid,
        gid=gid,
        services=parse_services(environ),
        authorized_keys_file=parse_keys_file(environ),
    )
