"""`torchrig run RECIPE [ARGS…]` or `torchrig run -- CMD …`: a detached job in the workbench.

The job runs as the workbench user, in the running workbench (or, with --fresh, a container
of its own), under torchrun when --gpus asks for more than one GPU. It is detached: it keeps
running when this command, its terminal or its SSH session ends. Options go before the
recipe name or the `--`; what follows belongs to the job.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from torchrig.cli.common import add_workbench_options

if TYPE_CHECKING:
    from torchrig.jobs.launch import JobRequest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)
    parser.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="use the first N GPUs of the workbench; more than one runs torchrun",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="run in a new container from the workbench image (removed when the job ends) "
        "instead of the running workbench",
    )
    parser.add_argument("--name", metavar="ID", help="the job's id (default: NAME-timestamp)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest complete checkpoint (passed to the recipe; scripts "
        "see TORCHRIG_RESUME=1)",
    )
    parser.add_argument(
        "-f", "--follow", action="store_true", help="follow the job's output (Ctrl-C leaves it)"
    )
    from torchrig.cli import slurm_jobs

    slurm_jobs.add_arguments(parser)
    parser.add_argument(
        "job",
        nargs=argparse.REMAINDER,
        metavar="RECIPE [ARGS…] | -- CMD …",
        help="a recipe and its options, or a command after --",
    )


def job_request(args: argparse.Namespace) -> JobRequest:
    """The request the command line asks for, or a UsageError."""
    from torchrig.errors import UsageError
    from torchrig.jobs.launch import JobRequest
    from torchrig.jobs.recipes import recipe_command
    from torchrig.jobs.state import check_name, program_name

    words = list(args.job or [])
    recipe: str | None = None
    if words[:1] == ["--"]:  # only the separator; a later `--` belongs to the command
        command = words[1:]
        if not command:
            raise UsageError("no command after --", "e.g. torchrig run -- python train.py")
    elif words:
        recipe = words[0]
        extra = words[1:]
        if args.resume and "--resume" not in extra:
            extra.append("--resume")
        command = recipe_command(recipe, extra)
    else:
        raise UsageError(
            "name a recipe or give a command after --",
            "e.g. torchrig run causal-lm --help, or torchrig run -- python train.py",
        )
    return JobRequest(
        command=tuple(command),
        name=check_name(args.name) if args.name else (recipe or program_name(command)),
        explicit_id=bool(args.name),
        gpus=args.gpus,
        fresh=args.fresh,
        recipe=recipe,
        resume=args.resume or (recipe is not None and "--resume" in command),
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from torchrig.cli.common import progress_printer, session_from
    from torchrig.cli.output import print_json
    from torchrig.jobs.launch import start_job
    from torchrig.launch.session import engine_for

    if args.on == "slurm":
        from torchrig.cli.slurm_jobs import run_on_slurm

        return run_on_slurm(args)
    request = job_request(args)
    session = session_from(args)
    engine = engine_for(session, args.engine)
    say = progress_printer(args)

    def image() -> str:
        from torchrig.launch.up import build

        return build(session, engine, say).tag

    started = start_job(session, engine, request, image=image, progress=say)
    job = started.job
    if args.json:
        print_json(
            {
                "id": job.id,
                "container": started.container,
                "fresh": started.fresh,
                "command": list(request.command),
                "dir": str(job.dir),
                "log": str(job.log),
            }
        )
    else:
        where = "a fresh container " if started.fresh else ""
        print(f"started job {job.id} in {where}{started.container}", file=sys.stderr)
        if not args.follow:
            print(f"  follow:  torchrig logs {job.id} -f", file=sys.stderr)
            print(f"  stop:    torchrig stop {job.id}", file=sys.stderr)
    if not args.follow:
        return 0
    from torchrig.cli.logs import follow_job

    return follow_job(session, engine, job, tail=None)
