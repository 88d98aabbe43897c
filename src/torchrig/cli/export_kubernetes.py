"""`torchrig export kubernetes [RECIPE ARGS… | -- CMD…]`: a TrainJob and an Indexed Job.

Registered through `torchrig export` (cli/export.py hands it the parsed arguments, after
split_options has taken export's own options back from the job's words). Writes
kubernetes/trainjob.yaml and kubernetes/job.yaml beside torchrig.toml (or into -o DIR).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `export kubernetes` (the cluster exports share them)."""
    from torchrig.cli.common import add_cluster_size_options

    add_cluster_size_options(parser)
    parser.add_argument(
        "--image",
        metavar="NAME@sha256:…",
        help="the image the cluster pulls (default: the digest `torchrig push` recorded)",
    )
    parser.add_argument("--name", metavar="NAME", help="the job's name (default: torchrig-PROJECT)")
    parser.add_argument(
        "job",
        nargs=argparse.REMAINDER,
        metavar="RECIPE [ARGS…] | -- CMD …",
        help="kubernetes: what every process runs, a recipe or a command after --",
    )
    parser.set_defaults(_export_parser=parser)


def split_options(args: argparse.Namespace) -> list[str]:
    """Options written after the format belong to export, the rest to the job.

    argparse hands everything after the format to the REMAINDER positional, options too
    (`export kubernetes --nodes 2 causal-lm --preset tiny`). The leading words that are
    export's own options, with their values, are parsed again here; the job starts at the
    first other word (the recipe) or after `--`, so a recipe's own --name stays its own."""
    parser: argparse.ArgumentParser = args._export_parser
    words = list(args.job or [])
    i = 0
    while i < len(words) and words[i].startswith("-") and words[i] != "--":
        option, has_value, _ = words[i].partition("=")
        action = parser._option_string_actions.get(option)
        i += 1
        if action is not None and action.nargs != 0 and not has_value:
            i += 1
    if i:
        parser.parse_args([*words[:i], args.format], namespace=args)
    return words[i:]


def job_command(words: list[str]) -> tuple[str, ...]:
    from torchrig.errors import UsageError
    from torchrig.jobs.recipes import recipe_command

    if words[:1] == ["--"]:
        if len(words) == 1:
            raise UsageError("no command after --", "e.g. -- python train.py")
        return tuple(words[1:])
    if words:
        return tuple(recipe_command(words[0], words[1:]))
    raise UsageError(
        "name a recipe or give a command after --: it is what every process of the job runs",
        "e.g. torchrig export kubernetes causal-lm --preset tiny --out runs/tiny",
    )


def _count(value: int | None, what: str, least: int) -> int | None:
    from torchrig.errors import UsageError

    if value is not None and value < least:
        raise UsageError(f"{what} {value} is less than {least}", f"give {what} {least} or more")
    return value


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.errors import TorchrigError
    from torchrig.fsutil import write_atomically
    from torchrig.kube.export import Request, kube_job, render
    from torchrig.launch.local import find_base, local_facts
    from torchrig.launch.session import engine_for

    request = Request(
        command=job_command(list(args.job or [])),
        name=args.name,
        image=args.image,
        nodes=_count(args.nodes, "--nodes", 1),
        gpus_per_node=_count(args.gpus_per_node, "--gpus-per-node", 0),
    )
    session = session_from(args)
    engine = None
    cluster = session.spec.cluster
    if not (request.image or (cluster and cluster.image)):
        # The Plan's tag needs the base image the engine holds; a named digest needs neither.
        try:
            engine = engine_for(session, None)
        except TorchrigError:
            engine = None  # no engine here: nothing was built here, the tag stays unknown
    env_file = session.project_dir / "torchrig.env"
    plan = session.plan(
        local_facts(
            session,
            base=find_base(session, engine),
            env_file=env_file if env_file.exists() or env_file.is_symlink() else None,
            with_keys=False,
            mounts_here=False,
        )
    )
    job = kube_job(plan, session.spec, session.project_dir, request)
    files = render(job)
    if args.stdout:
        print("".join(files.values()), end="")
        return 0
    folder: Path = args.output or session.project_dir / "kubernetes"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomically(folder / name, text)
        print(f"wrote {folder / name}")
    return 0
