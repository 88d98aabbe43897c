"""The Slurm side of `run --on slurm`, `logs JOB`, `stop JOB` and `jobs`.

Each verb asks here first whether its job id is a Slurm job this project submitted
(.torchrig/slurm/<id>.json) and, if so, answers through Slurm's own commands; every other id
goes on to the local workbench as before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """run's cluster options."""
    from torchrig.cli.common import add_cluster_size_options

    parser.add_argument(
        "--on",
        choices=("workbench", "slurm"),
        default="workbench",
        help="where the job runs: the workbench (default) or the Slurm cluster of [cluster]",
    )
    add_cluster_size_options(parser, "slurm: ")
    parser.add_argument(
        "--runtime",
        choices=("pyxis", "apptainer", "podman", "docker"),
        help="slurm: how nodes run the image ([cluster.slurm] runtime)",
    )
    parser.add_argument(
        "--image", metavar="NAME@sha256:…", help="slurm: the image (default: the pushed digest)"
    )


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    from torchrig.cli.common import add_engine_option, add_host_option, add_spec_option

    parser.add_argument(
        "--nodes",
        type=int,
        nargs="?",
        const=0,
        metavar="N",
        help="on the Slurm cluster of [cluster]: check that N nodes (default: [cluster] nodes) "
        "join and all-reduce correctly, naming any node that does not",
    )
    add_spec_option(parser)
    add_host_option(parser)
    add_engine_option(parser)
    parser.add_argument("--image", metavar="NAME@sha256:…", help=argparse.SUPPRESS)
    parser.add_argument("--runtime", choices=RUNTIMES, help="--nodes: how nodes run the image")
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="--nodes: seconds to wait for every node to join (default 60)",
    )


RUNTIMES = ("pyxis", "apptainer", "podman", "docker")


def verify_nodes(args: argparse.Namespace) -> int:
    """Submit the node check (cluster/nodecheck.py, once per node) and follow it."""
    import dataclasses

    from torchrig.cli.common import session_from
    from torchrig.cli.export_slurm import cluster_job
    from torchrig.cluster.records import submit_job
    from torchrig.cluster.submit import follow
    from torchrig.errors import UsageError

    if not 0 < args.join_timeout <= 3600:
        raise UsageError(
            f"--join-timeout {args.join_timeout:g} is not a number of seconds from 1 to 3600",
            "e.g. --join-timeout 60",
        )
    session = session_from(args)
    job = cluster_job(
        session,
        ["--", "python", "-m", "torchrig.cluster.nodecheck", f"{args.join_timeout:g}"],
        nodes=args.nodes or None,
        gpus_per_node=None,
        image=args.image,
        name=None,
        runtime=args.runtime,
        engine_name=args.engine,
    )
    job = dataclasses.replace(job, name=job.name.replace("nodecheck", "verify-nodes", 1),
                              torchrun=False)  # fmt: skip
    record = submit_job(session.project_dir, job)
    print(f"checking {job.nodes} node(s): Slurm job {record.slurm_id}", file=sys.stderr)
    return follow(record.slurm_id, record.job_dir)


def run_on_slurm(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.cli.export_slurm import cluster_job
    from torchrig.cli.output import print_json
    from torchrig.cluster.records import submit_job
    from torchrig.cluster.submit import follow
    from torchrig.errors import UsageError

    if args.fresh or args.gpus is not None:
        raise UsageError(
            "--fresh and --gpus are for the workbench", "on Slurm give --nodes and --gpus-per-node"
        )
    words = list(args.job or [])
    if args.resume and words[:1] != ["--"] and "--resume" not in words:
        words.append("--resume")
    session = session_from(args)
    job = cluster_job(
        session,
        words,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        image=args.image,
        name=args.name,
        runtime=args.runtime,
        engine_name=args.engine,
    )
    record = submit_job(session.project_dir, job)
    if args.json:
        print_json(
            {
                "id": record.id,
                "slurm_id": record.slurm_id,
                "nodes": job.nodes,
                "image": job.image,
                "command": record.command,
                "dir": str(record.job_dir),
                "log": str(record.log),
            }
        )
    else:
        print(
            f"submitted job {record.id} (Slurm job {record.slurm_id}) on {job.nodes} node(s)",
            file=sys.stderr,
        )
        if not args.follow:
            print(f"  follow:  torchrig logs {record.id} -f", file=sys.stderr)
            print(f"  stop:    torchrig stop {record.id}", file=sys.stderr)
    if not args.follow:
        return 0
    return follow(record.slurm_id, record.job_dir)


def slurm_logs(project_dir: Path, job_id: str, *, follow_it: bool) -> int | None:
    """`logs JOB [-f]` for a Slurm job; None when JOB is not one."""
    from torchrig.cluster.records import find_record
    from torchrig.cluster.submit import follow

    record = find_record(project_dir, job_id)
    if record is None:
        return None
    if follow_it:
        return follow(record.slurm_id, record.job_dir)
    if record.log.exists():
        sys.stdout.write(record.log.read_text(errors="replace"))
    return 0


def slurm_stop(project_dir: Path, job_id: str) -> int | None:
    """`stop JOB` for a Slurm job: SIGTERM to every process (the recipe saves a checkpoint),
    then scancel; None when JOB is not one."""
    from torchrig.cluster.records import find_record
    from torchrig.cluster.submit import cancel

    record = find_record(project_dir, job_id)
    if record is None:
        return None
    cancel(record.slurm_id, signal="TERM")
    cancel(record.slurm_id)
    print(f"stopped job {record.id} (Slurm job {record.slurm_id})", file=sys.stderr)
    return 0


def slurm_rows(project_dir: Path) -> list[dict[str, Any]]:
    """`jobs` rows for this project's Slurm jobs."""
    from torchrig.cluster.records import read_records
    from torchrig.cluster.slurm import EXIT_FILE
    from torchrig.cluster.submit import job_state

    rows: list[dict[str, Any]] = []
    for record in read_records(project_dir):
        try:
            state = job_state(record.slurm_id)
        except Exception:  # no Slurm client here: the record still lists the job
            state = None
        exit_file = record.job_dir / EXIT_FILE
        code = exit_file.read_text().strip() if exit_file.exists() else ""
        if state is not None:
            shown = state.state.lower()
        else:
            shown = f"exited {code}" if code.isdigit() else "unknown"
        rows.append(
            {
                "id": record.id,
                "state": shown,
                "started": record.submitted,
                "ended": None,
                "returncode": int(code) if code.isdigit() else None,
                "signal": None,
                "container": f"slurm:{record.slurm_id}",
                "fresh": False,
                "gpus": None,
                "command": record.command,
                "dir": str(record.job_dir),
            }
        )
    return rows
