"""`torchrig stop JOB`: SIGTERM (the job saves a final checkpoint), then SIGKILL after the
stop timeout; say how it ended and how long it took."""

from __future__ import annotations

import argparse

from torchrig.cli.common import add_workbench_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="seconds to wait after SIGTERM before SIGKILL (default: resources.stop_timeout)",
    )
    parser.add_argument("job", metavar="JOB", help="a job id (see `torchrig jobs`)")


def run(args: argparse.Namespace) -> int:
    import sys

    from torchrig.cli.common import project_from
    from torchrig.cli.output import print_json
    from torchrig.errors import UsageError
    from torchrig.jobs.launch import stop_job, workspace_of
    from torchrig.jobs.state import find_job, jobs_root
    from torchrig.launch.session import engine_for

    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout:g} is not a positive number of seconds")
    project = project_from(args)
    from torchrig.cli.slurm_jobs import slurm_stop

    code = slurm_stop(project.project_dir, args.job)
    if code is not None:
        return code
    engine = engine_for(project, args.engine)
    job = find_job(jobs_root(workspace_of(project, engine)), args.job)
    timeout = args.timeout if args.timeout is not None else project.spec.resources.stop_timeout
    stopped = stop_job(project, engine, job, float(timeout))
    exit_record = stopped.job.exit or {}
    if args.json:
        print_json(
            {
                "id": stopped.job.id,
                "state": stopped.state,
                "returncode": exit_record.get("returncode"),
                "signal": exit_record.get("signal"),
                "seconds": stopped.seconds,
                "timeout": stopped.timeout_s,
                "forced": stopped.forced,
                "notes": stopped.notes,
            }
        )
    else:
        how = "killed after the timeout" if stopped.forced else stopped.state
        print(f"job {stopped.job.id}: {how} after {stopped.seconds:g} s")
        for note in stopped.notes:
            print(f"  note: {note}", file=sys.stderr)
    return 0
