"""`torchrig export slurm|apptainer [RECIPE ARGS… | -- CMD…]` and the job `run --on slurm`
submits: the sbatch script (and the Apptainer definition) for the pinned image.

Shares export kubernetes's options (--nodes, --gpus-per-node, --image, --name); adds
--runtime. The image is the Plan's build, by its pushed digest (push.record.cluster_image).
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchrig.cluster.target import ClusterJob
    from torchrig.launch.session import Session

RUNTIMES = ("pyxis", "apptainer", "podman", "docker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="how each node runs the image (default: [cluster.slurm] runtime)",
    )


def cluster_job(
    session: Session,
    words: list[str],
    *,
    nodes: int | None,
    gpus_per_node: int | None,
    image: str | None,
    name: str | None,
    runtime: str | None,
    engine_name: str | None = None,
    now: datetime.datetime | None = None,
) -> ClusterJob:
    from torchrig.cli.export_kubernetes import _count, job_command
    from torchrig.cluster.target import ClusterJob, cluster_of
    from torchrig.errors import TorchrigError, UsageError
    from torchrig.jobs.state import check_name, program_name
    from torchrig.launch.local import find_base, local_facts
    from torchrig.launch.session import engine_for
    from torchrig.push.record import cluster_image

    cluster = cluster_of(session.spec)
    if cluster.engine != "slurm":
        raise UsageError(
            f"[cluster] engine is {cluster.engine!r}, not slurm",
            'set engine = "slurm", or use `torchrig export kubernetes`',
        )
    command = job_command(words)
    recipe = words[0] if words and words[0] != "--" else None
    requested = image or cluster.image or None
    tag: str = ""
    if requested is None:
        try:
            engine = engine_for(session, engine_name)
        except TorchrigError:
            engine = None
        plan = session.plan(
            local_facts(
                session, base=find_base(session, engine), with_keys=False, mounts_here=False
            )
        )
        if plan.image.tag is None:
            raise UsageError(
                f"the image is not known yet ({'; '.join(plan.image.pending)})",
                "run `torchrig build` first",
            )
        tag = plan.image.tag
    ref = cluster_image(session.project_dir, tag, requested)
    if "@sha256:" not in ref:
        raise UsageError(
            f"{ref} is a tag: Slurm nodes must run the same bytes",
            "run `torchrig push` (or give --image NAME@sha256:…)",
        )
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    job_name = check_name(name) if name else f"{recipe or program_name(list(command))}-{stamp}"
    if recipe is not None and "--resume" not in command:
        command = (*command, "--resume")
    return ClusterJob(
        project=session.spec.project.name,
        image=ref,
        command=command,
        cluster=cluster,
        nodes=_count(nodes, "--nodes", 1) or cluster.nodes,
        gpus_per_node=(
            cluster.gpus_per_node
            if gpus_per_node is None
            else _count(gpus_per_node, "--gpus-per-node", 0) or 0
        ),
        runtime=runtime or cluster.slurm.runtime,
        name=job_name,
        resume_flag=recipe is not None,
    )


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.cluster.apptainer import render_definition
    from torchrig.cluster.slurm import render_sbatch
    from torchrig.fsutil import write_atomically

    session = session_from(args)
    job = cluster_job(
        session,
        list(args.job or []),
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        image=args.image,
        name=args.name,
        runtime=args.runtime,
    )
    if args.format == "apptainer":
        text, default = render_definition(job), session.project_dir / "torchrig.def"
    else:
        text, default = render_sbatch(job), session.project_dir / "torchrig.sbatch"
    if args.stdout:
        print(text, end="")
        return 0
    target: Path = args.output or default
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, text)
    print(f"wrote {target}")
    return 0
