"""torchrig.userfiles: as root, a project's files are read with its owner's rights.

The project folders here belong to uid 4242 (no passwd entry), as a person's project that
root runs `torchrig up` for; the secrets are root-only files the tests make.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchrig import userfiles
from torchrig.errors import UsageError

OWNER = 4242
SECRET = b"root-only-secret-7f3a\n"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another UID needs root")


@pytest.fixture
def room() -> Iterator[Path]:
    """A folder anyone may traverse (pytest's room sits in a 0700 folder of root's)."""
    folder = Path(tempfile.mkdtemp(prefix="t-sec2-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def project_of(room: Path, uid: int = OWNER) -> Path:
    project = room / "project"
    project.mkdir()
    os.chown(project, uid, uid)
    return project


def root_only(room: Path) -> Path:
    secret = room / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return secret


@as_root
def test_a_root_only_file_is_refused_naming_the_owner(room: Path) -> None:
    project, secret = project_of(room), root_only(room)
    with pytest.raises(OSError) as err:
        userfiles.read_bytes(secret, project)
    assert err.value.strerror == "uid 4242, the project's owner, may not read it"


@as_root
def test_a_file_the_owner_may_read_is_read(room: Path) -> None:
    project = project_of(room)
    keys = room / "keys.pub"
    keys.write_text("ssh-ed25519 AAAA me\n")
    keys.chmod(0o644)
    assert userfiles.read_bytes(keys, project) == b"ssh-ed25519 AAAA me\n"


@as_root
def test_the_owners_own_0600_file_is_read(room: Path) -> None:
    project = project_of(room)
    env = project / "torchrig.env"
    env.write_text("HF_TOKEN=x\n")
    env.chmod(0o600)
    os.chown(env, OWNER, OWNER)
    assert userfiles.read_text(env, project, "env file", "fix") == "HF_TOKEN=x\n"


@as_root
def test_a_symlink_out_of_the_project_is_refused_even_to_a_readable_file(room: Path) -> None:
    project = project_of(room)
    outside = room / "public.txt"
    outside.write_text("anyone may read this\n")
    (project / "torchrig.env").symlink_to(outside)
    with pytest.raises(OSError) as err:
        userfiles.read_bytes(project / "torchrig.env", project)
    assert err.value.strerror == f"a symlink out of the project folder {project}"


@as_root
def test_a_symlink_inside_the_project_is_followed(room: Path) -> None:
    project = project_of(room)
    (project / "real.env").write_text("A=1\n")
    (project / "torchrig.env").symlink_to("real.env")
    assert userfiles.read_bytes(project / "torchrig.env", project) == b"A=1\n"


@as_root
def test_a_fifo_is_refused_without_hanging(room: Path) -> None:
    project = project_of(room)
    os.mkfifo(project / "torchrig.env")
    with pytest.raises(OSError) as err:
        userfiles.read_bytes(project / "torchrig.env", project)
    assert err.value.strerror == "not a regular file"


def test_a_huge_file_is_refused(room: Path) -> None:
    big = room / "big"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(OSError) as err:
        userfiles.read_bytes(big, room, limit=1024)
    assert err.value.strerror == "larger than 1024 bytes"


def test_a_missing_file_is_one_usage_line(room: Path) -> None:
    with pytest.raises(UsageError) as err:
        userfiles.read_text(room / "nope", room, "--env-file", "create it")
    assert (
        err.value.message == f"--env-file: cannot read {room / 'nope'} (No such file or directory)"
    )
    assert err.value.fix == "create it"


def test_not_root_reads_as_itself_and_may_follow_symlinks_anywhere(
    room: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    project = room / "p"
    project.mkdir()
    (room / "elsewhere.env").write_text("A=1\n")
    (project / "torchrig.env").symlink_to(room / "elsewhere.env")
    assert userfiles.owner_of(project) is None
    assert userfiles.read_bytes(project / "torchrig.env", project) == b"A=1\n"


@as_root
def test_roots_own_project_is_read_as_root(room: Path) -> None:
    project = project_of(room, uid=0)
    project.chmod(0o755)
    assert userfiles.owner_of(project) is None
    assert userfiles.read_bytes(root_only(room), project) == SECRET


@as_root
def test_a_root_folder_others_may_write_is_read_as_nobody(room: Path) -> None:
    shared = project_of(room, uid=0)
    shared.chmod(0o1777)  # like /tmp: anyone could have put the spec there
    owner = userfiles.owner_of(shared)
    assert owner is not None and owner.uid == userfiles.NOBODY
    with pytest.raises(OSError):
        userfiles.read_bytes(root_only(room), shared)


@as_root
def test_roots_project_under_a_private_folder_is_read_after_up_gave_the_workbench_its_acl(
    room: Path,
) -> None:
    # `up` as root gives the workbench UID an ACL entry on the project, so its group-class
    # bits (the ACL mask) say others may write: the files are read as nobody. Nobody may not
    # enter the 0700 folder above it (/root), yet must read the spec `down --spec` names.
    private = room / "root-home"
    private.mkdir(mode=0o700)
    project = private / "myproject"
    project.mkdir()
    project.chmod(0o775)  # what the ACL mask shows: rwx for the workbench UID
    spec = project / "torchrig.toml"
    spec.write_text('[project]\nname = "x"\n')
    spec.chmod(0o644)
    owner = userfiles.owner_of(project)
    assert owner is not None and owner.uid == userfiles.NOBODY
    assert userfiles.read_bytes(spec, project) == b'[project]\nname = "x"\n'
    # Still nobody's rights inside: a root-only file of the project is refused,
    leak = project / "root-only"
    leak.write_bytes(SECRET)
    leak.chmod(0o600)
    with pytest.raises(OSError):
        userfiles.read_bytes(leak, project)
    # and a symlink out of the project to a root-only file is refused.
    (project / "link.toml").symlink_to(root_only(room))
    with pytest.raises(OSError, match="symlink out of the project"):
        userfiles.read_bytes(project / "link.toml", project)


@as_root
def test_a_uid_without_passwd_entry_never_gets_group_root(room: Path) -> None:
    project = project_of(room)
    os.chown(project, OWNER, 0)
    owner = userfiles.owner_of(project)
    assert owner is not None and (owner.uid, owner.gid, owner.groups) == (4242, 65534, (65534,))
    group_root = room / "group-root"
    group_root.write_bytes(SECRET)
    group_root.chmod(0o640)  # root:root 0640, like /etc/shadow's root:shadow
    with pytest.raises(OSError):
        userfiles.read_bytes(group_root, project)


@as_root
def test_a_wheelhouse_with_one_root_only_file_is_refused(room: Path) -> None:
    project = project_of(room)
    house = room / "wheels"
    house.mkdir()
    (house / "a-1-py3-none-any.whl").write_bytes(b"PK")
    (house / "b-1-py3-none-any.whl").write_bytes(SECRET)
    (house / "b-1-py3-none-any.whl").chmod(0o600)
    with pytest.raises(UsageError) as err:
        userfiles.check_folder(house, project, "sources.find_links", "fix")
    assert "may not read it" in err.value.message
    (house / "b-1-py3-none-any.whl").chmod(0o644)
    userfiles.check_folder(house, project, "sources.find_links", "fix")


@as_root
def test_the_private_copy_is_0600_and_holds_the_owners_file(room: Path) -> None:
    project = project_of(room)
    (project / "torchrig.env").write_text("HF_TOKEN=x\n")
    dest = room / "state" / "env"
    userfiles.private_copy(project / "torchrig.env", project, dest, "env", "fix")
    assert dest.read_text() == "HF_TOKEN=x\n"
    assert dest.stat().st_mode & 0o777 == 0o600


@as_root
def test_the_parent_keeps_its_rights_and_threads_do_not_matter(room: Path) -> None:
    project = project_of(room)
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait)
    busy.start()
    try:
        for _ in range(5):
            with pytest.raises(OSError):
                userfiles.read_bytes(root_only(room), project)
    finally:
        stop.set()
        busy.join()
    assert (os.geteuid(), os.getegid()) == (0, 0)
    assert root_only(room).read_bytes() == SECRET
