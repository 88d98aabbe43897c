"""Which job holds a GPU process: NVML gives PIDs, job.json gives the job's PID.

NVML reports PIDs as the host's kernel numbers them, while a job's PID is recorded inside
the container, in its own PID namespace. /proc/PID/status's NSpid line lists a process's PID
in every namespace it belongs to, innermost last, so each GPU process is walked up its
parents (PPid) and matched on the innermost number of each ancestor: the same on the host
and inside the workbench. A GPU process whose PID is not visible here (another container's
PID namespace) has no holder.
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


def holders_of(
    gpu_pids: Iterable[int], job_pids: Mapping[str, int], proc: Path = Path("/proc")
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
                found[pid] = by_pid[inner]
                break
            if ppid <= 1:
                break
            current = ppid
    return found
