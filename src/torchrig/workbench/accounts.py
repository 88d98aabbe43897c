"""Create the workbench user and group with exactly the host's UID and GID.

The account files are edited directly (passwd, group, shadow, gshadow under `root`), not with
useradd/usermod: the result is the same on Debian and Ubuntu images, a restart changes
nothing, and it can be tested on a folder. What the image already has decides the details:

- A user with the UID already (Ubuntu's `ubuntu` is 1000): it is renamed to the workbench
  user (home, shell, password field set anew; it leaves its supplementary groups).
- A user with the name but another UID: a regular one (UID >= 1000, from the image) is
  removed so the name is free; a system account (`daemon`, `sshd`, …) is an error.
- A group with the GID already: reused, and renamed to the user's name when it was the
  private group of a user that gave way above (`ubuntu`); else it keeps its name (GID 100
  stays `users`, macOS's 20 stays `dialout`: only the number matters on files).
- No group with the GID but one with the user's name: a regular one takes the GID; a system
  group keeps its own, and the new group is called NAME-GID.

The password field is `*`, not `!`: `!` marks the account locked, which sshd refuses
(SECURITY S8); `*` only means no password can match.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from torchrig.workbench.env import EnvError

FIRST_REGULAR_ID = 1000
# System accounts that sit above FIRST_REGULAR_ID in some images.
SYSTEM_NAMES = frozenset({"nobody", "nogroup", "root"})
SHELL = "/bin/bash"
GECOS = "torchrig workbench user"


@dataclass
class _Table:
    """A colon-separated account file: rows of fields; other lines are kept as they are."""

    path: Path
    width: int
    rows: list[list[str] | str] = field(default_factory=list)
    changed: bool = False

    @classmethod
    def read(cls, path: Path, width: int) -> _Table:
        table = cls(path, width)
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                fields = line.split(":")
                ok = len(fields) == width and not line.startswith(("#", "+", "-"))
                table.rows.append(fields if ok else line)
        return table

    def entries(self) -> list[list[str]]:
        return [r for r in self.rows if isinstance(r, list)]

    def find(self, column: int, value: str) -> list[str] | None:
        return next((r for r in self.entries() if r[column] == value), None)

    def remove(self, entry: list[str]) -> None:
        self.rows = [r for r in self.rows if r is not entry]
        self.changed = True

    def append(self, entry: list[str]) -> None:
        assert len(entry) == self.width
        self.rows.append(entry)
        self.changed = True

    def set(self, entry: list[str], values: list[str]) -> None:
        if entry != values:
            entry[:] = values
            self.changed = True

    def write(self) -> None:
        if not self.changed:
            return
        text = "".join((":".join(r) if isinstance(r, list) else r) + "\n" for r in self.rows)
        replace_file(self.path, text)


def replace_file(path: Path, text: str) -> None:
    """Write beside, keep the old file's owner and mode (shadow is root:shadow 0640), rename."""
    try:
        st = path.stat()
        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        mode, owner = 0o644, None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if owner is not None and (os.getuid() == 0 or owner != (os.getuid(), os.getgid())):
                os.fchown(handle.fileno(), *owner)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_system(entry: list[str]) -> bool:
    return int(entry[2]) < FIRST_REGULAR_ID or entry[0] in SYSTEM_NAMES


def _drop_member(groups: _Table, name: str) -> None:
    column = 3
    for entry in groups.entries():
        members = [m for m in entry[column].split(",") if m]
        if name in members:
            groups.set(entry, [*entry[:column], ",".join(m for m in members if m != name)])


def ensure_account(
    user: str,
    uid: int,
    gid: int,
    *,
    root: Path = Path("/"),
    home: Path | None = None,
    today: int | None = None,
) -> list[str]:
    """Make /etc's account files hold `user` with `uid`:`gid`; return what changed, in words.

    Raises EnvError when the name belongs to a system account of the image.
    """
    etc = root / "etc"
    home = home or Path("/home") / user
    day = str(today if today is not None else int(time.time() // 86400))
    passwd = _Table.read(etc / "passwd", 7)
    group = _Table.read(etc / "group", 4)
    shadow = _Table.read(etc / "shadow", 9)
    gshadow = _Table.read(etc / "gshadow", 4)
    notes: list[str] = []
    gone: list[str] = []  # names of users that gave way

    by_name = passwd.find(0, user)
    by_uid = passwd.find(2, str(uid))
    if by_name is not None and by_name is not by_uid:
        if _is_system(by_name):
            raise EnvError(
                f'TORCHRIG_USER "{user}" is a system account of this image (UID {by_name[2]}); '
                "pick another user name (user.name in torchrig.toml)"
            )
        passwd.remove(by_name)
        gone.append(user)
        notes.append(f"removed the image's user {user} (UID {by_name[2]}) to reuse its name")
    if by_uid is not None and by_uid[0] != user:
        gone.append(by_uid[0])
        notes.append(f"renamed the image's user {by_uid[0]} (UID {uid}) to {user}")

    # The group first: the user's entry names its GID.
    by_gid = group.find(2, str(gid))
    group_by_name = group.find(0, user)
    group_name = user
    if by_gid is not None:
        private = by_gid[0] in gone and (group_by_name is None or group_by_name is by_gid)
        if by_gid[0] != user and private:
            old = by_gid[0]
            group.set(by_gid, [user, *by_gid[1:]])
            entry = gshadow.find(0, old)
            if entry is not None:
                gshadow.set(entry, [user, *entry[1:]])
            notes.append(f"renamed the image's group {old} (GID {gid}) to {user}")
        group_name = by_gid[0]
    elif group_by_name is not None and not _is_system(group_by_name):
        notes.append(f"moved the image's group {user} from GID {group_by_name[2]} to {gid}")
        group.set(group_by_name, [*group_by_name[:2], str(gid), group_by_name[3]])
    else:
        if group_by_name is not None:
            group_name = f"{user}-{gid}"[:32]
        group.append([group_name, "x", str(gid), ""])
        if gshadow.path.exists() and gshadow.find(0, group_name) is None:
            gshadow.append([group_name, "!", "", ""])
        notes.append(f"created group {group_name} (GID {gid})")
    for name in gone:
        _drop_member(group, name)
        _drop_member(gshadow, name)

    fields = [user, "x", str(uid), str(gid), GECOS, str(home), SHELL]
    if by_uid is not None:
        passwd.set(by_uid, fields)
    else:
        passwd.append(fields)
        notes.append(f"created user {user} (UID {uid}, GID {gid})")

    if shadow.path.exists():
        for name in gone:
            entry = shadow.find(0, name)
            if entry is not None:
                shadow.remove(entry)
        entry = shadow.find(0, user)
        if entry is None:
            shadow.append([user, "*", day, "0", "99999", "7", "", "", ""])
        elif entry[1] != "*" or entry[2] in ("", "0") or entry[7]:
            # No password, not locked, not expired, no forced change.
            shadow.set(entry, [user, "*", day, *entry[3:7], "", entry[8]])

    for table in (group, gshadow, passwd, shadow):
        table.write()
    return notes
