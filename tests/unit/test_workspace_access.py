"""The workbench UID's POSIX ACL on a root-owned project, checked against the real acl tools.

torchrig writes the `system.posix_acl_*` xattrs itself; getfacl (package acl, installed by
.ci/install-engines.sh) is the reference that reads them back, and setfacl writes ACLs
torchrig must read and merge without widening anyone else's rights.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from torchrig.errors import HostError, UsageError
from torchrig.launch import workspace_access as wa

UID = 70000


def getfacl(path: Path, *, default: bool = False) -> list[str]:
    """getfacl's entries (effective rights kept), without the comment header."""
    args = ["getfacl", "--omit-header", "--absolute-names", "--numeric"]
    done = subprocess.run([*args, *(["-d"] if default else []), str(path)], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return [" ".join(line.split()) for line in done.stdout.splitlines() if line.strip()]


def setfacl(path: Path, *args: str) -> None:
    subprocess.run(["setfacl", *args, str(path)], check=True, capture_output=True)


def test_the_kernel_format_round_trips_with_getfacl_and_setfacl(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    target.chmod(0o640)
    acl = wa.with_user(wa.from_mode(0o640), 4321, 0o5)
    os.setxattr(target, wa.ACCESS, wa.encode(acl))
    assert getfacl(target) == [
        "user::rw-",
        "user:4321:r-x",
        "group::r--",
        "mask::r-x",
        "other::---",
    ]
    setfacl(target, "-m", "u:99:rw,g:55:r,u:7:x")
    assert wa.decode(os.getxattr(target, wa.ACCESS)) == {
        (wa.USER_OBJ, wa.UNDEFINED_ID): 6,
        (wa.USER, 7): 1,
        (wa.USER, 99): 6,
        (wa.USER, 4321): 5,
        (wa.GROUP_OBJ, wa.UNDEFINED_ID): 4,
        (wa.GROUP, 55): 4,
        (wa.MASK, wa.UNDEFINED_ID): 7,
        (wa.OTHER, wa.UNDEFINED_ID): 0,
    }


def test_a_grant_widens_nobody_elses_effective_rights(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    target.chmod(0o700)
    # alice and the owning group are named rwx, but the mask lets them read only.
    setfacl(target, "-m", "u:4001:rwx,g::rwx")
    setfacl(target, "-n", "-m", "m::r")
    before = getfacl(target)
    assert "user:4001:rwx #effective:r--" in before
    wa.grant(tmp_path, UID)
    after = getfacl(target)
    assert "user:4001:r--" in after and "group::r--" in after
    assert f"user:{UID}:rwx" in after and "mask::rwx" in after


def test_grant_gives_the_owners_rights_and_a_default_for_new_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "sub" / "run.sh").chmod(0o755)
    (tmp_path / "notes.txt").write_text("n")
    (tmp_path / "notes.txt").chmod(0o444)
    tmp_path.chmod(0o755)
    old = os.umask(0o022)
    try:
        done = wa.grant(tmp_path, UID)
    finally:
        os.umask(old)
    assert done.entries == 4 and done.hard_links == 0
    assert f"user:{UID}:rwx" in getfacl(tmp_path / "sub" / "run.sh")
    assert f"user:{UID}:r--" in getfacl(tmp_path / "notes.txt")  # read-only stays read-only
    assert getfacl(tmp_path, default=True) == [
        "user::rwx",
        f"user:{UID}:rwx",
        "group::r-x",
        "mask::rwx",
        "other::r-x",
    ]
    # What root (or anyone) makes later inherits the entry; the folder stays root's.
    (tmp_path / "sub" / "later.txt").write_text("l")
    assert f"user:{UID}:rwx #effective:rw-" in getfacl(tmp_path / "sub" / "later.txt")
    assert (tmp_path.stat().st_uid, tmp_path.stat().st_gid) == (os.getuid(), os.getgid())
    assert wa.has_write(tmp_path, UID, UID)


def test_the_default_acl_keeps_a_strict_umask(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    old = os.umask(0o077)
    try:
        wa.grant(tmp_path, UID)
    finally:
        os.umask(old)
    assert "other::---" in getfacl(tmp_path, default=True)


def test_symlinks_hard_links_and_devices_outside_are_never_changed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    project = tmp_path / "project"
    project.mkdir()
    (project / "to-dir").symlink_to(outside)
    (project / "to-file").symlink_to(outside / "secret")
    os.link(outside / "secret", project / "linked")
    os.mkfifo(project / "fifo")
    done = wa.grant(project, UID)
    assert done.hard_links == 1
    for untouched in (outside, outside / "secret", project / "fifo"):
        assert not any(str(UID) in line for line in getfacl(untouched)), untouched
    assert wa.has_write(project, UID, UID) and not wa.has_write(outside, UID, UID)


def test_a_narrowed_mask_means_not_writable(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    wa.grant(tmp_path, UID)
    tmp_path.chmod(0o755)  # chmod sets the mask to the group bits: r-x
    assert not wa.has_write(tmp_path, UID, UID)


def test_no_acl_support_is_refused_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f").write_text("x")

    def no_acls(*args: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(wa.os, "setxattr", no_acls)
    with pytest.raises(HostError) as err:
        wa.grant(tmp_path, UID)
    assert "filesystem without POSIX ACLs" in err.value.message
    assert "local filesystem" in (err.value.fix or "")
    monkeypatch.undo()
    assert not any(str(UID) in line for line in getfacl(tmp_path / "f") + getfacl(tmp_path))


def test_ids_a_host_account_or_subuid_range_has_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "subuid").write_text("bob:65536:10000\n")
    (tmp_path / "subgid").write_text("")
    monkeypatch.setattr(wa, "ETC", tmp_path)
    with pytest.raises(UsageError) as err:
        wa.check_ids_free(UID, UID)
    assert "70000 is in bob's range 65536-75535 in /etc/subuid" in err.value.message
    assert "e.g. uid = 75536 and gid = 75536" in (err.value.fix or "")
    assert wa.host_accounts_using(0, None) == ["uid 0 is the host user root"]
    assert wa.host_accounts_using(None, None) == []
