"""Options and loading steps shared by the verbs that read a spec or host facts."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchrig.host.facts import HostFacts
    from torchrig.launch.session import Project, Session
    from torchrig.lock.lockfile import LockFile
    from torchrig.spec.model import Spec


def add_spec_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        type=Path,
        default=Path("torchrig.toml"),
        metavar="FILE",
        help="the spec to use (default: ./torchrig.toml)",
    )


def add_host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        type=Path,
        metavar="FILE",
        help="use facts saved by `torchrig host --json` instead of probing this machine",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def load_spec_from(args: argparse.Namespace) -> tuple[Spec, str]:
    from torchrig.spec.load import load_spec, spec_digest

    spec = load_spec(args.spec)
    return spec, spec_digest(spec)


def host_facts(args: argparse.Namespace, *, engines: bool | tuple[str, ...] = True) -> HostFacts:
    from torchrig.host.facts import load_host_facts

    if args.host is not None:
        return load_host_facts(args.host)
    from torchrig.host.probe import probe_host

    return probe_host(engines=engines)


def project_from(args: argparse.Namespace) -> Project:
    """The project of a verb that only reaches its workbench: no PyTorch resolution."""
    from torchrig.launch.session import open_project

    return open_project(
        Path(args.spec),
        host_facts(args, engines=_engines(args)),
        host_from_file=args.host is not None,
    )


def _engines(args: argparse.Namespace) -> bool | tuple[str, ...]:
    """--engine NAME: only that engine is probed (the other is never used)."""
    name = getattr(args, "engine", None)
    return (name,) if name else True


def session_from(args: argparse.Namespace) -> Session:
    """The spec, host facts (probed, or --host FILE) and resolution of a verb that builds or
    runs; --variant, where the verb has it, replaces the spec's."""
    from torchrig.launch.session import open_session
    from torchrig.spec.load import load_spec

    spec = load_spec(args.spec)
    if getattr(args, "variant", None) is not None:
        from torchrig.lock.make import with_variant

        spec = with_variant(spec, args.variant)
    return open_session(
        Path(args.spec),
        host_facts(args, engines=_engines(args)),
        host_from_file=args.host is not None,
        spec=spec,
    )


def lock_path(args: argparse.Namespace) -> Path:
    return Path(args.spec).parent / "torchrig.lock"


def read_lock_if_any(path: Path) -> LockFile | None:
    from torchrig.lock.lockfile import read_lock

    return read_lock(path) if path.exists() else None


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=("docker", "podman"),
        help="container engine to use (default: Docker if it answers, else Podman)",
    )


def add_cluster_size_options(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """--nodes and --gpus-per-node, overriding [cluster] (`run --on slurm`, the cluster exports);
    `scope` starts their help, e.g. "slurm: " where they apply to one place only."""
    parser.add_argument(
        "--nodes", type=int, metavar="N", help=f"{scope}nodes (default: [cluster] nodes)"
    )
    parser.add_argument(
        "--gpus-per-node",
        type=int,
        metavar="G",
        help=f"{scope}GPUs and processes per node; 0 for CPU (default: [cluster] gpus_per_node)",
    )


def add_workbench_options(parser: argparse.ArgumentParser) -> None:
    """--spec, --host, --engine and --json: what every verb that touches a workbench takes."""
    add_spec_option(parser)
    add_host_option(parser)
    add_engine_option(parser)
    add_json_option(parser)


def progress_printer(args: argparse.Namespace) -> Callable[[str], None]:
    """Build and bootstrap progress on stderr (stdout stays clean for --json)."""
    import sys

    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    return say
