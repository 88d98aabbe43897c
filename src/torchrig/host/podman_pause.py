"""Probing rootless Podman leaves no pause process behind.

The first rootless podman command of a user starts a pause process (`catatonit -P`, or
`podman pause` where catatonit is missing) that keeps the user namespace alive, and it
stays when the command ends: Podman's design (containers/podman issues 7057 and 8759: "If
you have no containers running, you can kill it safely, and we'll just spin up another
when a fresh Podman launches"). So `torchrig host`, `doctor` or `up` run by a user who has
never used Podman would leave a process in their name — one that blocked `userdel`
(issue 10, finding 7). The probe notes the pause processes before it runs podman and
kills the ones it started, unless a container of this user runs (conmon alive: then the
namespace is in use, and the process is not ours to judge). Podman's own tests know a
pause process by /proc/PID/comm, "catatonit" or "podman pause"; so does this.

Root's Podman has no user namespace and no pause process: nothing to do as root.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

PAUSE_NAMES = frozenset({"catatonit", "podman pause"})
Kill = Callable[[int, int], None]


def processes(proc: Path, uid: int, names: frozenset[str]) -> set[int]:
    """PIDs whose real UID is `uid` and whose comm is one of `names`."""
    found = set()
    for entry in proc.glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() not in names:
                continue
            status = (entry / "status").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        uids = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("Uid:")), [])
        if uids and uids[0] == str(uid):
            found.add(int(entry.name))
    return found


@contextlib.contextmanager
def no_new_pause_process(
    proc: Path = Path("/proc"), *, uid: int | None = None, kill: Kill = os.kill
) -> Iterator[None]:
    """Run podman commands inside; the pause processes they start are gone afterwards."""
    me = os.getuid() if uid is None else uid
    if me == 0 or not proc.is_dir():
        yield
        return
    before = processes(proc, me, PAUSE_NAMES)
    try:
        yield
    finally:
        started = processes(proc, me, PAUSE_NAMES) - before
        if started and not processes(proc, me, frozenset({"conmon"})):
            for pid in sorted(started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
