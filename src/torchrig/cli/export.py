"""`torchrig export compose|devcontainer|kubernetes|slurm|apptainer`: the run plan for other
tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrig.cli.common import add_host_option, add_spec_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from torchrig.cli import export_kubernetes, export_monitoring, export_slurm

    parser.add_argument(
        "format",
        choices=(
            "compose",
            "devcontainer",
            "kubernetes",
            "slurm",
            "apptainer",
            "serving",
            *export_monitoring.FORMATS,
        ),
    )
    add_spec_option(parser)
    add_host_option(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write (default: compose.yaml, or .devcontainer/devcontainer.json; "
        "kubernetes: a folder, default kubernetes/; slurm: torchrig.sbatch; apptainer: "
        "torchrig.def)",
    )
    parser.add_argument("--stdout", action="store_true", help="print instead of writing")
    parser.add_argument(
        "--run", type=Path, metavar="RUN", help="serving: the trained run to put in the image"
    )
    export_kubernetes.add_arguments(parser)
    export_monitoring.add_arguments(parser)
    export_slurm.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from torchrig.cli import export_kubernetes
    from torchrig.cli.common import session_from
    from torchrig.errors import TorchrigError, UsageError
    from torchrig.fsutil import write_atomically
    from torchrig.launch.compose import render_compose, render_devcontainer
    from torchrig.launch.local import find_base, local_facts
    from torchrig.launch.session import engine_for

    # Options after the format reach `job` too (argparse's REMAINDER): take them back.
    args.job = export_kubernetes.split_options(args)
    _refuse_options_of_other_formats(args)
    if args.format == "kubernetes":
        return export_kubernetes.run(args)
    if args.format in ("prometheus", "grafana"):
        from torchrig.cli import export_monitoring

        return export_monitoring.run(args)
    if args.format == "serving":
        from torchrig.cli import export_serving

        return export_serving.run(args)
    if args.format in ("slurm", "apptainer"):
        from torchrig.cli import export_slurm

        return export_slurm.run(args)
    if args.job:
        raise UsageError(
            f"export {args.format} takes no command ({' '.join(args.job)})",
            "drop it: the workbench runs what its image starts",
        )
    session = session_from(args)
    try:
        engine = engine_for(session, None)
    except TorchrigError:
        engine = None  # no engine here: nothing can have been built here either
    env_file = session.project_dir / "torchrig.env"
    plan = session.plan(
        local_facts(
            session,
            base=find_base(session, engine),
            env_file=env_file if env_file.is_file() else None,
            mounts_here=True,
        )
    )
    tag = plan.image.tag
    if tag is None or engine is None or not engine.image_exists(tag):
        raise UsageError(
            "no workbench image has been built yet" + (f" for this spec ({tag})" if tag else ""),
            "run `torchrig build` first",
        )
    if args.format == "compose":
        text, default = render_compose(plan), session.project_dir / "compose.yaml"
    else:
        text = render_devcontainer(plan)
        default = session.project_dir / ".devcontainer" / "devcontainer.json"
    if args.stdout:
        print(text, end="")
        return 0
    target = args.output or default
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, text)
    print(f"wrote {target}")
    return 0


# Which formats read each format-specific option: one given to a format that ignores it
# would be silently dropped (`export compose --nodes 4` writing a one-node file).
_CLUSTER = ("kubernetes", "slurm", "apptainer")
_MONITORING = ("prometheus", "grafana")
_OPTION_FORMATS = {
    "nodes": _CLUSTER,
    "gpus_per_node": _CLUSTER,
    "image": _CLUSTER,
    "name": _CLUSTER,
    "runtime": ("slurm", "apptainer"),
    "interval": _MONITORING,
    "target": _MONITORING,
    "prometheus_url": _MONITORING,
    "run": ("serving",),
}


def _refuse_options_of_other_formats(args: argparse.Namespace) -> None:
    from torchrig.errors import UsageError

    parser: argparse.ArgumentParser = args._export_parser
    for dest, formats in _OPTION_FORMATS.items():
        given = getattr(args, dest, None)
        if args.format in formats or given is None or given == parser.get_default(dest):
            continue
        option = "--" + dest.replace("_", "-")
        raise UsageError(
            f"export {args.format} does not use {option}",
            f"drop it; it is read by export {', '.join(formats)}",
        )
