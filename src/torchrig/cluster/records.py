"""Slurm jobs this project submitted: one small JSON record each, so `jobs`, `logs` and
`stop` find a Slurm job by the same id as a local one.

    .torchrig/slurm/<id>.json   {"id", "slurm_id", "job_dir", "script", "submitted", "command"}

The job's own files (output.log, exit, the script) live in its folder on the shared folder,
which every node and the login node see.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

from torchrig.cluster.slurm import LOG_FILE, render_sbatch
from torchrig.cluster.submit import submit
from torchrig.cluster.target import ClusterJob
from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically

RECORDS = Path(".torchrig") / "slurm"
SCRIPT = "job.sbatch"


@dataclass(frozen=True)
class SlurmRecord:
    id: str
    slurm_id: int
    job_dir: Path
    command: list[str]
    submitted: str

    @property
    def log(self) -> Path:
        return self.job_dir / LOG_FILE


def records_dir(project_dir: Path) -> Path:
    return project_dir / RECORDS


def submit_job(project_dir: Path, job: ClusterJob) -> SlurmRecord:
    """Write the script into the job's shared folder (sbatch opens --output there before the
    script runs, so the folder must exist first), submit it, and record it here."""
    job_dir = Path(job.job_dir)
    if (records_dir(project_dir) / f"{job.name}.json").exists():
        raise UsageError(f"a Slurm job named {job.name} exists already", "pick another --name")
    try:
        job_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise UsageError(
            f"{job_dir} exists already", "pick another --name, or remove that folder"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot make {job_dir} ({exc.strerror})",
            "[cluster] shared_dir must be a folder you can write on this login node",
        ) from None
    script = job_dir / SCRIPT
    write_atomically(script, render_sbatch(job))
    slurm_id = submit(script)
    record = SlurmRecord(
        id=job.name,
        slurm_id=slurm_id,
        job_dir=job_dir,
        command=list(job.command),
        submitted=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    folder = records_dir(project_dir)
    folder.mkdir(parents=True, exist_ok=True)
    document = {**record.__dict__, "job_dir": str(job_dir)}
    write_atomically(folder / f"{job.name}.json", json.dumps(document, indent=2) + "\n")
    return record


def read_records(project_dir: Path) -> list[SlurmRecord]:
    found: list[SlurmRecord] = []
    folder = records_dir(project_dir)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            found.append(
                SlurmRecord(
                    id=str(data["id"]),
                    slurm_id=int(data["slurm_id"]),
                    job_dir=Path(data["job_dir"]),
                    command=[str(w) for w in data.get("command") or []],
                    submitted=str(data.get("submitted", "")),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record names no job we could reach
    return found


def find_record(project_dir: Path, job_id: str) -> SlurmRecord | None:
    return next((r for r in read_records(project_dir) if r.id == job_id), None)
