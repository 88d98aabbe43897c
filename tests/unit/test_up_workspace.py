"""`torchrig up` as root refuses a workspace the (non-root) workbench user cannot write."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchrig.errors import UsageError
from torchrig.launch import up
from torchrig.launch.runplan import Identity

RIG = Identity(name="rig", uid=1000, gid=1000)


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up.os, "geteuid", lambda: 0)


def test_a_folder_only_its_owner_writes_is_refused(tmp_path: Path, as_root: None) -> None:
    tmp_path.chmod(0o755)
    owner = tmp_path.stat().st_uid
    if owner == RIG.uid:
        pytest.fail("the test folder must not belong to uid 1000")
    with pytest.raises(UsageError) as err:
        up.check_workspace_writable(tmp_path, RIG)
    assert "not writable by the workbench user rig (uid 1000)" in err.value.message
    assert f"chown -R 1000:1000 {tmp_path}" in (err.value.fix or "")


def test_a_group_writable_folder_of_its_group_is_fine(tmp_path: Path, as_root: None) -> None:
    tmp_path.chmod(0o775)
    who = Identity(name="rig", uid=1000, gid=tmp_path.stat().st_gid)
    up.check_workspace_writable(tmp_path, who)


def test_a_person_running_it_for_their_own_folder_is_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(up.os, "geteuid", lambda: 1234)
    tmp_path.chmod(0o500)
    try:
        up.check_workspace_writable(tmp_path, RIG)
    finally:
        tmp_path.chmod(0o755)
