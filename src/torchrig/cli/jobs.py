"""`torchrig jobs`: every job of this workspace and its state (running, exited N, killed,
lost when its container or its processes are gone without an exit record)."""

from __future__ import annotations

import argparse
from typing import Any

from torchrig.cli.common import add_workbench_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)


def run(args: argparse.Namespace) -> int:
    import shlex

    from torchrig.cli.common import project_from
    from torchrig.cli.output import print_json
    from torchrig.jobs.launch import all_jobs, job_states
    from torchrig.launch.session import engine_for

    project = project_from(args)
    engine = engine_for(project, args.engine)
    jobs = all_jobs(project, engine)
    states = job_states(project, engine, jobs)
    rows: list[dict[str, Any]] = []
    for job in jobs:
        record, exit_record = job.record or {}, job.exit or {}
        rows.append(
            {
                "id": job.id,
                "state": states[job.id],
                "started": job.started,
                "ended": exit_record.get("ended"),
                "returncode": exit_record.get("returncode"),
                "signal": exit_record.get("signal"),
                "container": job.container,
                "fresh": bool(record.get("fresh")),
                "gpus": record.get("gpus"),
                "command": [str(w) for w in record.get("command") or []],
                "dir": str(job.dir),
            }
        )
    from torchrig.cli.slurm_jobs import slurm_rows

    rows += slurm_rows(project.project_dir)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no jobs yet: torchrig run -- python train.py starts one")
        return 0
    table = [("JOB", "STATE", "STARTED", "COMMAND")]
    table += [
        (r["id"], r["state"], str(r["started"])[:19], shlex.join(r["command"])[:60]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3])
    return 0
