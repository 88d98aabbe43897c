"""What every job of a workspace is doing, read from the files the job runner and the
training core already write (nothing is asked of the running process):

    .torchrig/jobs/<id>/job.json, exit.json     the runner: command, pid, start, how it ended
    .torchrig/jobs/<id>/run.json                the training core: {"run": OUT} of the run
                                                the job trains (MetricsLog writes it)
    OUT/metrics.jsonl                           log lines, evaluations, checkpoints, resumes
    OUT/config.json                             the run's settings (its total --steps)
    OUT/checkpoints/step-N/manifest.json        when each checkpoint was written

Stdlib only (plus torchrig.jobs and torchrig.train.timeline, both stdlib): the exporter runs
it inside the workbench and `torchrig top` on the host.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.jobs.files import JOBS_DIR, read_json
from torchrig.jobs.runner import alive
from torchrig.jobs.state import Job, list_jobs
from torchrig.train.timeline import Follower, History, read_history

RUN_POINTER = "run.json"
STATES = ("starting", "running", "succeeded", "failed", "stopped", "lost")


@dataclass(frozen=True)
class JobView:
    id: str
    state: str
    """One of STATES: stopped = ended by a signal; lost = gone without an exit record."""
    pid: int | None
    run: Path | None
    history: History
    total_steps: int | None
    unit: str | None
    """'tokens' or 'samples' (the throughput's unit), None before the first log line."""
    last_checkpoint_step: int | None
    last_checkpoint_time: float | None
    """Unix time the newest complete checkpoint was written (its manifest says)."""
    log_time: float | None
    """When metrics.jsonl was last written (its mtime)."""
    ended: float | None = None
    """Unix time the job ended (exit.json), None while it runs."""

    @property
    def throughput(self) -> float | None:
        rec = self.history.last_train or {}
        value = rec.get(f"{self.unit}_per_s") if self.unit else None
        return float(value) if isinstance(value, int | float) else None

    @property
    def step_seconds(self) -> float | None:
        rec = self.history.last_train or {}
        wall, steps = rec.get("interval_s"), rec.get("steps_in_interval")
        if isinstance(wall, int | float) and isinstance(steps, int) and steps > 0:
            return float(wall) / steps
        return None

    def eta_seconds(self) -> float | None:
        rec = self.history.last_train or {}
        step, per = rec.get("step"), self.step_seconds
        if self.state != "running" or not isinstance(step, int) or not self.total_steps or not per:
            return None
        return max(self.total_steps - step, 0) * per


def job_state(job: Job, *, local: bool) -> str:
    """Where the job's processes share this pid namespace (`local`: the workbench itself,
    not a --fresh job's own container), a job with no exit record whose runner and job are
    both gone is lost; elsewhere it is taken at its record's word."""
    if job.exit is not None:
        if job.exit.get("signal"):
            return "stopped"
        return "succeeded" if job.exit.get("returncode") == 0 else "failed"
    if job.record is None:
        return "starting"
    if local and not job.record.get("fresh"):
        rec = job.record
        if not alive(rec.get("pid"), rec.get("pid_start")) and not alive(
            rec.get("runner_pid"), rec.get("runner_start")
        ):
            return "lost"
    return "running"


def _run_folder(job: Job, workspace: Path) -> Path | None:
    """The run the job trains, as the training core recorded it. The path is the one the
    job saw (inside the container, /workspace/...); map it onto this side's workspace."""
    pointer = read_json(job.dir / RUN_POINTER)
    raw = pointer.get("run") if pointer else None
    if not isinstance(raw, str) or not raw:
        return None
    path = Path(raw)
    if path.is_dir():
        return path
    for root in ("/workspace",):
        if raw == root or raw.startswith(root + "/"):
            mapped = workspace / raw[len(root) :].lstrip("/")
            if mapped.is_dir():
                return mapped
    return None


def _total_steps(run: Path) -> int | None:
    config = read_json(run / "config.json") or {}
    for key in ("--steps", "steps"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _newest_checkpoint(run: Path) -> tuple[int | None, float | None]:
    try:
        names = sorted(
            p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")
        )
    except OSError:
        return None, None
    for name in reversed(names):
        manifest = read_json(run / "checkpoints" / name / "manifest.json")
        if not manifest:
            continue  # being written (the manifest comes last)
        step = manifest.get("step")
        when = _parse_time(manifest.get("written_at"))
        return (step if isinstance(step, int) else None), when
    return None, None


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _unit(history: History) -> str | None:
    rec = history.last_train or {}
    for unit in ("tokens", "samples"):
        if isinstance(rec.get(f"{unit}_per_s"), int | float):
            return unit
    return None


def read_jobs(
    workspace: Path, *, local: bool = True, followers: dict[Path, Follower] | None = None
) -> list[JobView]:
    """Every job of the workspace with what its run says; oldest first.

    followers: kept by a caller that reads again and again (the exporter, top): each
    metrics.jsonl is then read incrementally and the views hold only the latest record of
    each kind. Without it, each run's whole history is read."""
    views = []
    seen: set[Path] = set()
    for job in list_jobs(workspace / JOBS_DIR):
        run = _run_folder(job, workspace)
        history = History()
        if run is not None and followers is not None:
            path = run / "metrics.jsonl"
            seen.add(path)
            history = followers.setdefault(path, Follower(path)).read()
        elif run is not None:
            history = read_history(run / "metrics.jsonl")
        ckpt_step, ckpt_time = _newest_checkpoint(run) if run else (None, None)
        try:
            log_time = (run / "metrics.jsonl").stat().st_mtime if run else None
        except OSError:
            log_time = None
        pid = (job.record or {}).get("pid")
        views.append(
            JobView(
                id=job.id,
                state=job_state(job, local=local),
                pid=pid if isinstance(pid, int) else None,
                run=run,
                history=history,
                total_steps=_total_steps(run) if run else None,
                unit=_unit(history),
                last_checkpoint_step=ckpt_step,
                last_checkpoint_time=ckpt_time,
                log_time=log_time,
                ended=_parse_time((job.exit or {}).get("ended")),
            )
        )
    if followers is not None:
        for gone in set(followers) - seen:
            del followers[gone]
    return views


def write_run_pointer(job_dir: Path, run: Path) -> None:
    """Called by the training core in a job (TORCHRIG_JOB_DIR set): which run it trains."""
    from torchrig.jobs.files import write_json

    write_json(job_dir / RUN_POINTER, {"run": str(run.resolve())})


def as_json(view: JobView) -> dict[str, Any]:
    last = view.history.last_train or {}
    ev = view.history.last_eval or {}
    return {
        "id": view.id,
        "state": view.state,
        "run": str(view.run) if view.run else None,
        "step": last.get("step"),
        "total_steps": view.total_steps,
        "loss": last.get("loss"),
        "lr": last.get("lr"),
        "unit": view.unit,
        "throughput": view.throughput,
        "mfu": last.get("mfu"),
        "data_wait": last.get("data_wait"),
        "step_seconds": view.step_seconds,
        "eta_seconds": view.eta_seconds(),
        "eval": {k: v for k, v in ev.items() if k not in ("event",)} or None,
        "last_checkpoint_step": view.last_checkpoint_step,
        "last_checkpoint_time": view.last_checkpoint_time,
        "resumes": len(view.history.resumes),
    }


def dumps(views: list[JobView]) -> str:
    return json.dumps([as_json(v) for v in views], indent=2)
