"""Which job holds a GPU process: NVML gives PIDs, job.json gives the job's PID.

NVML reports PIDs as the host's kernel numbers them, while a job's PID is recorded inside
the container, in its own PID namespace. /proc/PID/status's NSpid line lists a process's PID
in every namespace it belongs to, innermost last, so each GPU process is walked up its
parents (PPid) and matched on the innermost number of each ancestor: the same on the host
and inside the workbench. A GPU process whose PID is not visible here (another container's
PID namespace) has no holder.

The same innermost number exists in every container, so a match also needs the ancestor to
live in the workbench's PID namespace (`pid_ns`, the /proc/PID/ns/pid link of a process in
it: the exporter's own; on the host, the container's init as the engine reports it). Where
that link cannot be read (another user's process, for a user who is not root) the number
alone decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

Holders = dict[int, str]
MAX_DEPTH = 64


def _status(pid: int, proc: Path) -> tuple[int, int] | None:
    """(innermost pid, parent pid as seen here) of a live process, or None."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    inner, ppid = pid, 0
    for line in text.splitlines():
        if line.startswith("NSpid:"):
            fields = line.split()[1:]
            if fields:
                inner = int(fields[-1])
        elif line.startswith("PPid:"):
            ppid = int(line.split()[1])
    return inner, ppid


def pid_namespace(pid: int | str = "self", proc: Path = Path("/proc")) -> str | None:
    """The PID namespace a process lives in ('pid:[4026531836]'), or None if unreadable."""
    try:
        return str((proc / str(pid) / "ns" / "pid").readlink())
    except OSError:
        return None


def holders_of(
    gpu_pids: Iterable[int],
    job_pids: Mapping[str, int],
    proc: Path = Path("/proc"),
    pid_ns: str | None = None,
) -> Holders:
    """GPU process PID → the id of the job it descends from (absent: none found)."""
    by_pid = {pid: job for job, pid in job_pids.items()}
    found: Holders = {}
    if not by_pid:
        return found
    for pid in set(gpu_pids):
        current = pid
        for _ in range(MAX_DEPTH):
            status = _status(current, proc)
            if status is None:
                break
            inner, ppid = status
            if inner in by_pid:
                ns = pid_namespace(current, proc) if pid_ns else None
                if ns is None or ns == pid_ns:
                    found[pid] = by_pid[inner]
                    break
            if ppid <= 1:
                break
            current = ppid
    return found
