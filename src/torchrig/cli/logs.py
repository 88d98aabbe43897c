"""`torchrig logs [JOB]`: a job's output, or without JOB the workbench's (services, setup)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from torchrig.cli.common import add_engine_option, add_host_option, add_spec_option

if TYPE_CHECKING:
    from torchrig.engine.base import Engine
    from torchrig.jobs.state import Job
    from torchrig.launch.session import Addressed

LOST_CHECK_S = 5.0  # while following, how often to check that the job's container is still up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_option(parser)
    add_host_option(parser)
    add_engine_option(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep following")
    parser.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    parser.add_argument("job", nargs="?", metavar="JOB", help="a job id (see `torchrig jobs`)")


def follow_job(
    session: Addressed, engine: Engine, job: Job, *, tail: int | None, follow: bool = True
) -> int:
    """Pass the job's output on; following ends with the job. Returns the job's exit status
    (0 while it runs; 130 when Ctrl-C leaves it running)."""
    import sys
    import time

    from torchrig.jobs.follow import stream
    from torchrig.jobs.launch import is_running
    from torchrig.jobs.state import exit_status, job_state

    last_check = [time.monotonic()]
    lost = [False]

    def ended() -> bool:
        if job.reload().ended:
            return True
        if time.monotonic() - last_check[0] > LOST_CHECK_S:
            last_check[0] = time.monotonic()
            lost[0] = not is_running(engine.inspect(job.container))
        return lost[0]

    def write(chunk: bytes) -> None:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    try:
        stream(job.log, write, follow=follow, ended=ended, tail=tail)
    except KeyboardInterrupt:
        print(f"\nleft job {job.id} running: torchrig stop {job.id} ends it", file=sys.stderr)
        return 130
    final = job.reload()
    if not follow or (not final.ended and not lost[0]):
        return 0
    state = job_state(final, container_up=not lost[0])
    print(f"torchrig: job {job.id} {state}", file=sys.stderr)
    return exit_status(final) if final.ended else 1


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import project_from
    from torchrig.errors import UsageError
    from torchrig.launch.session import engine_for
    from torchrig.plan.names import container_name

    project = project_from(args)
    if args.job:
        from torchrig.cli.slurm_jobs import slurm_logs

        code = slurm_logs(project.project_dir, args.job, follow_it=args.follow)
        if code is not None:
            return code
    engine = engine_for(project, args.engine)
    if args.job:
        from torchrig.jobs.launch import workspace_of
        from torchrig.jobs.state import find_job, jobs_root

        job = find_job(jobs_root(workspace_of(project, engine)), args.job)
        return follow_job(project, engine, job, tail=args.tail, follow=args.follow)
    name = container_name(project.spec)
    if engine.inspect(name) is None:
        raise UsageError(f"{name} is not up", "start it with `torchrig up`")
    for line in engine.logs(name, follow=args.follow, tail=args.tail):
        print(line, flush=args.follow)
    return 0
