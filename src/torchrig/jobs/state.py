"""The jobs folder as the host sees it: job ids, records, and what state each job is in.

Pure apart from reading files, so ids and states are unit-tested without an engine.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.errors import UsageError
from torchrig.jobs.files import EXIT_FILE, JOB_FILE, JOBS_DIR, LOG_FILE, WORKSPACE, read_json

NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PYTHONS = re.compile(r"^python(\d(\.\d+)?)?$")
MAX_NAME = 40


def jobs_root(workspace: Path) -> Path:
    return workspace / JOBS_DIR


def in_container(job_id: str) -> str:
    """The job's folder as the container sees it (the workspace is mounted at /workspace)."""
    return f"{WORKSPACE}/{JOBS_DIR}/{job_id}"


def program_name(command: list[str]) -> str:
    """What a job is called by default: `python train.py` → train, `python -m a.b` → b."""
    words = list(command)
    name = Path(words[0]).name if words else "job"
    if PYTHONS.match(name):
        rest = words[1:]
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            rest = rest[1:]  # interpreter flags such as -u
        if rest[:1] == ["-c"]:
            rest = []  # inline code has no name of its own
        if rest[:1] == ["-m"] and len(rest) > 1:
            name = rest[1].rsplit(".", 1)[-1]
        elif rest:
            name = Path(rest[0]).stem
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._")[:MAX_NAME]
    return clean or "job"


def check_name(name: str) -> str:
    if not NAME_OK.match(name):
        raise UsageError(
            f"job name {name!r} is not allowed",
            "use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def new_job_id(name: str, now: datetime.datetime, taken: Callable[[str], bool]) -> str:
    """`NAME-YYYYmmdd-HHMMSS`, with -2, -3 … when two jobs start in the same second."""
    base = f"{name}-{now:%Y%m%d-%H%M%S}"
    if not taken(base):
        return base
    n = 2
    while taken(f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


@dataclass(frozen=True)
class Job:
    """One job folder: job.json (None until the runner has started it) and exit.json."""

    id: str
    dir: Path
    record: dict[str, Any] | None
    exit: dict[str, Any] | None

    @property
    def log(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def container(self) -> str:
        return str((self.record or {}).get("container") or "")

    @property
    def ended(self) -> bool:
        return self.exit is not None

    @property
    def started(self) -> str:
        return str((self.record or {}).get("started") or "")

    def reload(self) -> Job:
        return read_job(self.dir)


def read_job(job_dir: Path) -> Job:
    return Job(
        id=job_dir.name,
        dir=job_dir,
        record=read_json(job_dir / JOB_FILE),
        exit=read_json(job_dir / EXIT_FILE),
    )


def list_jobs(root: Path) -> list[Job]:
    """Every job, oldest first (ids sort by start time within a name; sort by the record)."""
    if not root.is_dir():
        return []
    found = [read_job(d) for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return sorted(found, key=lambda j: (j.started or "~", j.id))


def find_job(root: Path, ref: str) -> Job:
    """The job called `ref`, or the only one whose id starts with it."""
    jobs = list_jobs(root)
    exact = [j for j in jobs if j.id == ref]
    matches = exact or [j for j in jobs if j.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(
            f"{ref!r} matches {len(matches)} jobs: {', '.join(j.id for j in matches[:5])}",
            "give more of the id",
        )
    recent = ", ".join(j.id for j in jobs[-5:]) or "none yet"
    raise UsageError(f"no job {ref!r} (latest: {recent})", "`torchrig jobs` lists them all")


def exit_state(exit: dict[str, Any]) -> str:
    if exit.get("signal"):
        return "killed"
    return f"exited {exit.get('returncode')}"


def job_state(job: Job, *, container_up: bool | None, alive: bool | None = None) -> str:
    """running, exited N, killed, lost (its container or its processes are gone without an
    exit record), or starting (the runner has not written job.json yet).

    container_up / alive: None when unknown; then the job is taken at its record's word.
    """
    if job.exit is not None:
        return exit_state(job.exit)
    if container_up is False or alive is False:
        return "lost"
    return "starting" if job.record is None else "running"


def exit_status(job: Job) -> int:
    """The job's exit status as a shell reports it (128 + N when killed by signal N)."""
    import signal

    if job.exit is None:
        return 0
    name = job.exit.get("signal")
    if name:
        try:
            return 128 + int(signal.Signals[str(name)])
        except KeyError:
            return 137
    return int(job.exit.get("returncode") or 0)
