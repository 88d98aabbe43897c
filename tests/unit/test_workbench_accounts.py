"""Creating the workbench user in account files laid out like Debian's and Ubuntu's."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrig.workbench.accounts import ensure_account
from torchrig.workbench.env import EnvError

DEBIAN_PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
DEBIAN_GROUP = """\
root:x:0:
daemon:x:1:
dialout:x:20:
users:x:100:
nogroup:x:65534:
"""
DEBIAN_SHADOW = """\
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
sshd:!:19000::::::
nobody:*:19000:0:99999:7:::
"""
DEBIAN_GSHADOW = "root:*::\ndaemon:*::\ndialout:*::\nusers:*::\nnogroup:*::\n"
UBUNTU_EXTRA = {
    "passwd": "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n",
    "group": "adm:x:4:syslog,ubuntu\nubuntu:x:1000:\n",
    "shadow": "ubuntu:!:19000:0:99999:7:::\n",
    "gshadow": "adm:*::syslog,ubuntu\nubuntu:!::\n",
}
DAY = 20000


def make_root(tmp_path: Path, ubuntu: bool = False) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    files = {
        "passwd": DEBIAN_PASSWD,
        "group": DEBIAN_GROUP,
        "shadow": DEBIAN_SHADOW,
        "gshadow": DEBIAN_GSHADOW,
    }
    for name, text in files.items():
        (etc / name).write_text(text + (UBUNTU_EXTRA[name] if ubuntu else ""))
    (etc / "shadow").chmod(0o640)
    return tmp_path


def read(root: Path, name: str) -> list[str]:
    return (root / "etc" / name).read_text().splitlines()


def entry(root: Path, name: str, key: str) -> str | None:
    return next((ln for ln in read(root, name) if ln.split(":")[0] == key), None)


def test_new_user_and_group(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    notes = ensure_account("alice", 4242, 4343, root=root, today=DAY)
    assert entry(root, "passwd", "alice") == (
        "alice:x:4242:4343:torchrig workbench user:/home/alice:/bin/bash"
    )
    assert entry(root, "group", "alice") == "alice:x:4343:"
    # '*' (no password) and not '!' (locked: sshd refuses the account), no forced change.
    assert entry(root, "shadow", "alice") == f"alice:*:{DAY}:0:99999:7:::"
    assert entry(root, "gshadow", "alice") == "alice:!::"
    assert notes == ["created group alice (GID 4343)", "created user alice (UID 4242, GID 4343)"]
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o640
    # Everything else is as it was.
    assert read(root, "passwd")[:4] == DEBIAN_PASSWD.splitlines()


def test_a_restart_changes_nothing(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ensure_account("alice", 4242, 4343, root=root, today=DAY)
    before = {n: (root / "etc" / n).stat().st_mtime_ns for n in ("passwd", "group", "shadow")}
    assert ensure_account("alice", 4242, 4343, root=root, today=DAY + 5) == []
    after = {n: (root / "etc" / n).stat().st_mtime_ns for n in ("passwd", "group", "shadow")}
    assert before == after


def test_ubuntus_user_with_the_same_uid_is_renamed(tmp_path: Path) -> None:
    root = make_root(tmp_path, ubuntu=True)
    notes = ensure_account("alice", 1000, 1000, root=root, today=DAY)
    assert entry(root, "passwd", "ubuntu") is None
    assert entry(root, "passwd", "alice") == (
        "alice:x:1000:1000:torchrig workbench user:/home/alice:/bin/bash"
    )
    assert entry(root, "group", "ubuntu") is None
    assert entry(root, "group", "alice") == "alice:x:1000:"
    assert entry(root, "gshadow", "alice") == "alice:!::"
    # ubuntu's supplementary groups are not inherited.
    assert entry(root, "group", "adm") == "adm:x:4:syslog"
    assert entry(root, "shadow", "ubuntu") is None
    assert entry(root, "shadow", "alice") == f"alice:*:{DAY}:0:99999:7:::"
    assert "renamed the image's user ubuntu (UID 1000) to alice" in notes
    assert "renamed the image's group ubuntu (GID 1000) to alice" in notes
    assert [ln.split(":")[2] for ln in read(root, "passwd")].count("1000") == 1


def test_a_host_user_called_ubuntu_with_another_uid(tmp_path: Path) -> None:
    root = make_root(tmp_path, ubuntu=True)
    ensure_account("ubuntu", 1001, 1001, root=root, today=DAY)
    assert entry(root, "passwd", "ubuntu") == (
        "ubuntu:x:1001:1001:torchrig workbench user:/home/ubuntu:/bin/bash"
    )
    assert entry(root, "group", "ubuntu") == "ubuntu:x:1001:"
    assert [ln.split(":")[0] for ln in read(root, "passwd")].count("ubuntu") == 1
    assert [ln.split(":")[0] for ln in read(root, "shadow")].count("ubuntu") == 1


def test_an_existing_system_group_with_the_gid_is_reused(tmp_path: Path) -> None:
    """macOS users are 501:20; GID 20 is Debian's dialout. Only the number matters."""
    root = make_root(tmp_path)
    notes = ensure_account("alice", 501, 20, root=root, today=DAY)
    assert entry(root, "passwd", "alice") == (
        "alice:x:501:20:torchrig workbench user:/home/alice:/bin/bash"
    )
    assert entry(root, "group", "dialout") == "dialout:x:20:"
    assert entry(root, "group", "alice") is None
    assert notes == ["created user alice (UID 501, GID 20)"]


def test_a_system_group_with_the_users_name_keeps_its_gid(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ensure_account("users", 4242, 4343, root=root, today=DAY)
    assert entry(root, "group", "users") == "users:x:100:"
    assert entry(root, "group", "users-4343") == "users-4343:x:4343:"
    assert entry(root, "passwd", "users") == (
        "users:x:4242:4343:torchrig workbench user:/home/users:/bin/bash"
    )


def test_a_system_uid_is_taken_over(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ensure_account("alice", 65534, 65534, root=root, today=DAY)
    assert entry(root, "passwd", "nobody") is None
    assert entry(root, "passwd", "alice") == (
        "alice:x:65534:65534:torchrig workbench user:/home/alice:/bin/bash"
    )
    assert entry(root, "group", "nogroup") == "nogroup:x:65534:"


@pytest.mark.parametrize("name", ["daemon", "sshd", "nobody"])
def test_the_name_of_a_system_account_is_refused(tmp_path: Path, name: str) -> None:
    root = make_root(tmp_path)
    before = read(root, "passwd")
    with pytest.raises(EnvError, match=f'TORCHRIG_USER "{name}" is a system account'):
        ensure_account(name, 4242, 4343, root=root, today=DAY)
    assert read(root, "passwd") == before


def test_a_locked_entry_left_behind_is_unlocked(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    ensure_account("alice", 4242, 4343, root=root, today=DAY)
    shadow = root / "etc/shadow"
    shadow.write_text(shadow.read_text().replace(f"alice:*:{DAY}:", "alice:!:0:"))
    ensure_account("alice", 4242, 4343, root=root, today=DAY)
    assert entry(root, "shadow", "alice") == f"alice:*:{DAY}:0:99999:7:::"


def test_comments_and_odd_lines_are_kept(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    passwd = root / "etc/passwd"
    passwd.write_text("# a comment\n" + passwd.read_text() + "+::::::\n")
    ensure_account("alice", 4242, 4343, root=root, today=DAY)
    lines = read(root, "passwd")
    assert lines[0] == "# a comment" and "+::::::" in lines
