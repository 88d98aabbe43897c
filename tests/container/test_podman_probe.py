"""Issue 10, finding 7: probing rootless Podman leaves no process in the user's name.

A throwaway user (made here, removed after) who has never run Podman runs torchrig's
engine probe; afterwards no process of theirs may be left (rootless Podman's `catatonit
-P` pause process stayed and blocked `userdel`), and `userdel` succeeds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from torchrig.host.probe import probe_engine

pytestmark = pytest.mark.container


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def reap_dead_children(within: float) -> None:
    """Reap the children that have ended, for up to `within` seconds; live ones are left
    to be found. (As init would: this machine's PID 1 reaps late, or not in time.)"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid == 0:
            time.sleep(0.05)


def probe_as(uid: int, gid: int, home: Path) -> str:
    """torchrig's podman probe in a forked child that has become the user (this Python
    lives under /root, which they may not enter: no exec). What it found, as one line.

    The child is a subreaper, as systemd is for a login: the pause process Podman
    daemonizes is its orphan, so the one the probe kills is reaped here, not left a zombie
    of a PID 1 that reaps when it likes (CI's did not within 10 s)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(read_end)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.chdir(home)
            os.environ.clear()
            os.environ.update({"HOME": str(home), "PATH": "/usr/bin:/bin", "USER": "probe"})
            engine, _ = probe_engine("podman")
            reap_dead_children(within=2.0)
            os.write(write_end, f"{engine.reachable} {engine.rootless} {engine.error}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        said = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    return said


def state(line: str) -> str:
    """R, S, Z … of the process a user_processes line names ("" if it is gone)."""
    try:
        stat = Path(f"/proc/{line.split()[0]}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def user_processes(uid: int) -> list[str]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if entry.stat().st_uid == uid:
                found.append(f"{entry.name} {(entry / 'cmdline').read_bytes()!r}")
        except OSError:
            continue
    return found


@pytest.fixture
def throwaway_user() -> Iterator[tuple[str, int]]:
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("podman") is None:
        pytest.fail("needs root, useradd and podman (the container test machine has them)")
    name = f"t-sec2-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", name], check=True, capture_output=True)
    uid = int(subprocess.run(["id", "-u", name], check=True, capture_output=True, text=True).stdout)
    try:
        yield name, uid
    finally:
        for line in user_processes(uid):  # what the code under test left: not left here
            with_pid = int(line.split()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(with_pid, 9)
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        for left in Path("/tmp").glob(f"*-{uid}"):  # podman-run-UID, containers-user-UID
            if left.stat().st_uid == uid:
                shutil.rmtree(left, ignore_errors=True)


def test_the_podman_probe_leaves_no_process_and_userdel_works(
    throwaway_user: tuple[str, int], security_figures: object
) -> None:
    name, uid = throwaway_user
    home = Path(f"/home/{name}")
    said = probe_as(uid, pwd.getpwnam(name).pw_gid, home)
    assert said.startswith("True True"), said  # it did reach rootless Podman
    # A killed process stays a zombie until init reaps it (at once under systemd; this CI
    # machine's init takes a moment): wait for that, never for a live one to end.
    deadline = time.monotonic() + 10
    while True:
        left = user_processes(uid)
        live = [line for line in left if state(line) not in ("Z", "")]
        if not left or live or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    security_figures.record(  # type: ignore[attr-defined]
        "podman_probe_processes_left", len(left), engine="podman", test="test_podman_probe"
    )
    assert left == []
    gone = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
    assert "currently used by process" not in gone.stderr
    assert gone.returncode in (0, 12), gone.stderr  # 12: only the mail spool was missing
