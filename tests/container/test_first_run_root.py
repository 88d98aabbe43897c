"""Issue 11, item 1: `torchrig up` as root in a root-owned project folder, end to end.

What a person on a rented server does: as root, a project folder that root made (as
install.sh does), `torchrig up`. Checked from outside, on Docker and Podman: the workbench
is healthy; no process in it runs as root but PID 1; a file written through `torchrig exec`
lands in the project as uid/gid 70000 with the ACL docs/workbench.md describes; the folder
is still 0:0 (no chown); root reads and deletes what the workbench wrote; and, black-box,
no host account got a right it did not have: each one's access to the files that were there
is the same after as before, and to what the workbench wrote at most what it has to a file
root made in the same folder.

Before the fix, `up` refused: "the workspace … is not writable by the workbench user rig
(uid 1000) … chown -R 1000:1000".
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.workbench import cpu_torch_spec, jupyter_only, torchrig

pytestmark = pytest.mark.container

ID = 70000  # docs/workbench.md: the workbench's uid and gid when torchrig runs as root
PORTS = {"docker": 18971, "podman": 18972}
Rights = dict[str, dict[str, str]]  # account -> path -> "rwx" subset


def spec(name: str, port: int) -> str:
    # No [user]: the ids are torchrig's choice. The shared Hugging Face cache is not what
    # this test is about (it has tests of its own).
    return cpu_torch_spec(
        name, sections=jupyter_only(port), extra='\n[cache]\nhuggingface = "none"\n'
    )


def rights_of_host_accounts(paths: list[Path]) -> Rights:
    """What each host account (but root) may do to each path, as the kernel answers it:
    a child process per account takes its uid, gid and groups and asks access(2)."""
    found: Rights = {}
    for account in pwd.getpwall():
        if account.pw_uid == 0:
            continue
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child process
            try:
                os.close(read)
                os.setgroups(os.getgrouplist(account.pw_name, account.pw_gid))
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)
                answer = {
                    str(p): "".join(
                        flag
                        for flag, mode in (("r", os.R_OK), ("w", os.W_OK), ("x", os.X_OK))
                        if os.access(p, mode)
                    )
                    for p in paths
                }
                os.write(write, json.dumps(answer).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            found[account.pw_name] = json.loads(pipe.read() or "{}")
        os.waitpid(child, 0)
    return found


def getfacl(path: Path) -> list[str]:
    done = subprocess.run(
        ["getfacl", "--omit-header", "--absolute-names", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return [" ".join(line.split()) for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name = str(request.param)
    for tool in (name, "getfacl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (bash .ci/install-engines.sh)", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("this test is about running torchrig as root", pytrace=False)
    return name


@pytest.fixture
def project(engine: str, tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / f"t-root-{engine}"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "torchrig.toml").write_text(spec(folder.name, PORTS[engine]))
    (folder / "data").mkdir()
    (folder / "data" / "train.csv").write_text("x,y\n1,2\n")
    (folder / "private.txt").write_text("root's own\n")
    (folder / "private.txt").chmod(0o600)
    # The reference for new files: what root itself makes in this folder.
    (folder / "made-by-root.txt").write_text("r\n")
    for path in (folder, *folder.rglob("*")):
        os.chown(path, 0, 0, follow_symlinks=False)
    try:
        yield folder
    finally:
        torchrig("down", "--purge", "--engine", engine, cwd=folder, check=False)


def test_root_up_in_a_root_owned_folder(engine: str, project: Path) -> None:
    existing = [project, project / "data", project / "data" / "train.csv", project / "private.txt"]
    before = rights_of_host_accounts(existing)
    assert not any(a.pw_uid == ID for a in pwd.getpwall()), "70000 must be no host account"

    done = torchrig("up", "--engine", engine, "--json", cwd=project)
    info = json.loads(done.stdout)
    assert (info["uid"], info["gid"]) == (ID, ID), info
    said = [line for line in done.stderr.splitlines() if "POSIX ACL" in line]
    assert len(said) == 1 and f"uid {ID}, gid {ID}" in said[0], done.stderr
    assert "the folder stays 0:0" in said[0]

    ps = torchrig("exec", "--engine", engine, "--", "ps", "-eo", "uid=,pid=", cwd=project)
    rows = [line.split() for line in ps.stdout.splitlines() if line.strip()]
    root_pids = [pid for uid, pid in rows if uid == "0"]
    assert root_pids == ["1"], ps.stdout
    assert {uid for uid, _ in rows} == {"0", str(ID)}, ps.stdout

    write = (
        "set -e; echo made inside > /workspace/made-inside.txt; mkdir /workspace/new; "
        "echo deeper > /workspace/new/deeper.txt; echo more >> /workspace/data/train.csv; "
        "cat /workspace/private.txt > /dev/null"
    )
    torchrig("exec", "--engine", engine, "--", "sh", "-c", write, cwd=project)

    made = [project / "made-inside.txt", project / "new", project / "new" / "deeper.txt"]
    for path in made:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (ID, ID), path
    assert f"user:{ID}:rwx" in getfacl(project / "new")
    assert f"user:{ID}:rwx #effective:rw-" in getfacl(project / "made-inside.txt")
    assert f"user:{ID}:rw-" in getfacl(project / "data" / "train.csv")
    st = project.stat()
    assert (st.st_uid, st.st_gid) == (0, 0), "the folder stays root's"
    assert (project / "data" / "train.csv").stat().st_uid == 0

    # Black-box: nobody on the host gained anything.
    after = rights_of_host_accounts(existing)
    assert after == before
    new_files = rights_of_host_accounts([*made, project / "made-by-root.txt"])
    for account, rights in new_files.items():
        reference = set(rights[str(project / "made-by-root.txt")])
        for path in made:
            extra = set(rights[str(path)]) - reference - ({"x"} if path.is_dir() else set())
            assert not extra, f"{account} got {extra} on {path}"

    # Root reads and deletes everything the workbench wrote.
    assert (project / "made-inside.txt").read_text() == "made inside\n"
    assert (project / "new" / "deeper.txt").read_text() == "deeper\n"
    shutil.rmtree(project / "new")
    (project / "made-inside.txt").unlink()
    assert not (project / "new").exists() and not (project / "made-inside.txt").exists()

    # A second `up` finds everything in place: nothing changed, nothing said.
    again = torchrig("up", "--engine", engine, "--json", cwd=project)
    assert "POSIX ACL" not in again.stderr
