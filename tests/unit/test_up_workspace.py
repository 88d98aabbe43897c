"""`torchrig up` as root: the workbench user gets write access to a root-owned project
through an ACL entry (never a chown), as a UID no host account has; everything else is
refused before any build. Run through the CLI with the fake engine."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from torchrig.cli.main import main
from torchrig.compat.model import load_compat
from torchrig.compat.resolve import resolve
from torchrig.engine import RecordingEngine
from torchrig.host.facts import Engine, HostFacts, System
from torchrig.launch import up, workspace_access
from torchrig.launch.session import Session
from torchrig.plan.run import Identity
from torchrig.spec.load import parse_spec, spec_digest

IMAGE = "torchrig/demo:cpu-0123456789ab"
SPEC = (
    '[project]\nname = "demo"\n[torch]\nversion = "2.13.0"\n'
    "[services.jupyter]\nenabled = false\n[services.ssh]\nenabled = false\n"
)
ROOT = HostFacts(
    system=System(arch="x86_64", cpus=2, memory_bytes=8 << 30, user="root", uid=0, gid=0),
    engines=[Engine(name="docker", path="/usr/bin/docker", reachable=True)],
)
ID = workspace_access.ROOT_DEFAULT_ID

pytestmark = pytest.mark.root


class Healthy(RecordingEngine):
    def health_of(self, container: str, info: Mapping[str, Any]) -> str:
        return "healthy"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if os.geteuid() != 0:
        pytest.fail("these tests are about running torchrig as root; run them as root (CI does)")
    folder = tmp_path / "myproject"
    folder.mkdir(mode=0o755)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path))
    empty = tmp_path / "etc"
    empty.mkdir()
    monkeypatch.setattr(workspace_access, "ETC", empty)  # no subuid ranges
    return folder


def run_up(
    project: Path, monkeypatch: pytest.MonkeyPatch, spec_text: str = SPEC
) -> tuple[int, list[str], Healthy]:
    """`torchrig up` in `project`; the events: "build", then what was printed."""
    (project / "torchrig.toml").write_text(spec_text)
    spec = parse_spec(spec_text)
    compat = load_compat()
    session = Session(
        project / "torchrig.toml",
        spec,
        spec_digest(spec),
        ROOT,
        compat,
        resolve(spec, ROOT, compat),
    )
    monkeypatch.setattr("torchrig.cli.common.session_from", lambda args: session)
    engine = Healthy()
    engine.add_image(IMAGE)
    monkeypatch.setattr("torchrig.launch.session.engine_for", lambda session, name: engine)
    events: list[str] = []

    class Built:
        tag = IMAGE
        built = False

    def build(*args: object, **kwargs: object) -> Built:
        events.append("build")
        return Built()

    monkeypatch.setattr(up, "build", build)
    real_progress = up.give_workspace_access

    def give(workspace: Path, spec: object, who: Identity, progress: object) -> None:
        events.append("grant")
        real_progress(workspace, spec, who, lambda line: events.append(line))

    monkeypatch.setattr(up, "give_workspace_access", give)
    monkeypatch.chdir(project)
    return main(["up", "--engine", "docker"]), events, engine


def acl(path: Path) -> str:
    done = subprocess.run(
        ["getfacl", "--omit-header", "--absolute-names", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def started_uid(engine: Healthy) -> str:
    found = [c for c in engine.containers.values() if c.name == "torchrig-demo"]
    return str(found[-1].spec.env["TORCHRIG_UID"])


def test_a_root_owned_project_gets_an_acl_entry_not_a_chown(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text("x,y\n")
    code, events, engine = run_up(project, monkeypatch)
    assert code == 0, capsys.readouterr().err
    assert events[:2] == ["build", "grant"], "checked before the build, changed after it"
    lines = [e for e in events if e not in ("build", "grant")]
    assert len(lines) == 1, "what torchrig changes is printed in one line"
    assert f"uid {ID}, gid {ID} (torchrig's default as root: no host account" in lines[0]
    assert f"on {project} and its 3 entries with a POSIX ACL (u:{ID}" in lines[0]
    assert "the folder stays 0:0" in lines[0]
    assert (project.stat().st_uid, project.stat().st_gid) == (0, 0)
    assert f"user:{ID}:rwx" in acl(project) and f"user:{ID}:rw-" in acl(project / "data/train.csv")
    assert started_uid(engine) == str(ID)


def test_the_second_up_changes_nothing_and_prints_no_grant(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_up(project, monkeypatch)[0] == 0
    code, events, _ = run_up(project, monkeypatch)
    assert code == 0 and events == ["build"]


def test_the_default_id_taken_by_a_host_account_is_refused_before_the_build(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (workspace_access.ETC / "subuid").write_text(f"carol:{ID - 5}:10\n")
    code, events, _ = run_up(project, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and events == []
    assert f"{ID} is in carol's range {ID - 5}-{ID + 4} in /etc/subuid" in err
    assert f"e.g. uid = {ID + 5} and gid = {ID + 5}" in err
    assert f"user:{ID}" not in acl(project)


def test_a_folder_of_another_person_is_never_changed(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chown(project, 4242, 4343)
    code, events, _ = run_up(project, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and events == []
    assert "belongs to uid 4242 (4242:4343, mode 0755)" in err
    assert "set [user] uid = 4242 and gid = 4343 in torchrig.toml" in err
    assert "user:" not in acl(project).replace("user::", "")


def test_pinned_ids_that_own_the_folder_need_no_change(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chown(project, 4242, 4343)
    code, events, engine = run_up(project, monkeypatch, SPEC + "[user]\nuid = 4242\ngid = 4343\n")
    assert code == 0 and events == ["build"]
    assert started_uid(engine) == "4242"


def test_pinned_ids_on_a_root_folder_are_granted_and_named_as_the_specs(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, events, engine = run_up(project, monkeypatch, SPEC + "[user]\nuid = 5001\ngid = 5002\n")
    assert code == 0
    assert "uid 5001, gid 5002 ([user] uid/gid in torchrig.toml)" in events[2]
    assert "user:5001:rwx" in acl(project) and started_uid(engine) == "5001"


def test_no_acl_support_is_refused_before_the_build_with_the_fix(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_acls(*args: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(workspace_access.os, "setxattr", no_acls)
    code, events, _ = run_up(project, monkeypatch)
    err = capsys.readouterr().err
    assert code == 4 and events == []
    assert "is on a filesystem without POSIX ACLs" in err and "Traceback" not in err


def test_a_person_running_it_for_their_own_folder_is_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(up.os, "geteuid", lambda: 1234)
    tmp_path.chmod(0o500)
    spec = parse_spec(SPEC)
    try:
        assert not up.check_workspace_access(tmp_path, spec, Identity("ada", 1234, 1234))
    finally:
        tmp_path.chmod(0o755)
    assert "user:" not in acl(tmp_path).replace("user::", "")


def test_a_running_workbench_of_another_uid_is_recreated() -> None:
    who = Identity("rig", ID, ID)
    old = {"Config": {"Env": ["TORCHRIG_UID=1000", "PATH=/usr/bin"]}}
    assert up._other_user(old, who)
    assert not up._other_user({"Config": {"Env": [f"TORCHRIG_UID={ID}"]}}, who)


def test_doctor_says_up_will_grant_a_root_folder_and_sees_the_grant(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchrig.doctor import host as doctor
    from torchrig.doctor.host import HostContext

    spec = parse_spec(SPEC)
    check = HostContext(host=ROOT, compat=load_compat(), spec=spec, env={}, workspace=project)
    before = doctor.check_workspace(check)
    assert before.status == "pass" and "`torchrig up` gives the workbench user rig" in (
        before.finding
    )
    assert run_up(project, monkeypatch)[0] == 0
    after = doctor.check_workspace(check)
    assert after.status == "pass" and f"is writable by the workbench user rig (uid {ID})" in (
        after.finding
    )
