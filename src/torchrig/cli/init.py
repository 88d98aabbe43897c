"""`torchrig init`: write a commented torchrig.toml chosen from this machine's facts.

The file lists every key at its default with its description, and a header of what the
host has (GPUs, driver) so the next step, `torchrig plan`, holds no surprises. An existing
file is never overwritten without --force, and the new one appears whole or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torchrig.errors import UsageError
from torchrig.fsutil import write_atomically

if TYPE_CHECKING:
    import argparse

    from torchrig.host.facts import HostFacts
    from torchrig.host.pipconfig import HostSources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="overwrite an existing torchrig.toml")
    parser.add_argument(
        "--host",
        type=Path,
        metavar="FILE",
        help="write for the machine described by FILE (saved there with "
        "`torchrig host --json`) instead of probing this one",
    )
    parser.add_argument(
        "--name", help="project name (default: the folder's name, made a valid name)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="the project folder to write torchrig.toml in (default: the current folder)",
    )


def run(args: argparse.Namespace) -> int:
    from torchrig.spec.load import SPEC_FILE, parse_spec
    from torchrig.spec.template import project_name_from, render_spec

    folder: Path = args.dir
    if not folder.is_dir():
        raise UsageError(
            f"{folder} is not a folder",
            "create it first (mkdir -p) or pass an existing folder with --dir",
        )
    target = folder / SPEC_FILE
    if (target.exists() or target.is_symlink()) and not args.force:
        raise UsageError(
            f"{target} already exists",
            "edit it, or pass --force to replace it with a fresh one",
        )
    if target.is_dir():
        raise UsageError(f"{target} is a folder", "move it away, then run init again")
    name = args.name if args.name is not None else project_name_from(folder.resolve().name)
    _check_name(name)
    text = render_spec(name, _host_facts(args.host), _host_sources())
    parse_spec(text, path=str(target))  # what we write must load; a failure here is a bug
    write_atomically(target, text)
    print(f'wrote {target} for project "{name}"')
    plan = "torchrig plan" + (f" --spec {target}" if folder.resolve() != Path.cwd() else "")
    if args.host is not None:
        plan += f" --host {args.host}"
    print(f"next: edit it if you like, then `{plan}` shows what it resolves to and why")
    return 0


def _check_name(name: str) -> None:
    from pydantic import ValidationError

    from torchrig.spec.model import Invalid, Project

    try:
        Project(name=name)
    except ValidationError as exc:
        cause = exc.errors()[0].get("ctx", {}).get("error")
        if isinstance(cause, Invalid):
            raise UsageError(f"--name: {cause.message}", cause.fix) from None
        raise UsageError(f"--name: {name!r} is not a valid project name") from None


def _host_sources() -> HostSources:
    """This machine's pip and uv sources: lock and build run here, whatever --host says."""
    import os

    from torchrig.host.pipconfig import read_host_sources

    return read_host_sources(os.environ, Path.home())


def _host_facts(path: Path | None) -> HostFacts:
    if path is not None:
        from torchrig.host.facts import load_host_facts

        return load_host_facts(path)
    from torchrig.host.probe import probe_host

    # The engines are not needed to choose defaults, and asking them can take seconds.
    return probe_host(engines=False)
