"""`torchrig export compose|devcontainer`: the workbench's run plan for other tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrig.cli.common import add_host_option, add_spec_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=("compose", "devcontainer"))
    add_spec_option(parser)
    add_host_option(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write (default: compose.yaml, or .devcontainer/devcontainer.json)",
    )
    parser.add_argument("--stdout", action="store_true", help="print instead of writing")


def run(args: argparse.Namespace) -> int:
    from torchrig.errors import UsageError
    from torchrig.fsutil import write_atomically
    from torchrig.launch.export import render_compose, render_devcontainer
    from torchrig.launch.runplan import CONTAINER_PORTS, workbench_run
    from torchrig.launch.session import open_session
    from torchrig.launch.up import last_image, state_dir

    session = open_session(args)
    image = last_image(session.spec.project.name)
    if image is None:
        raise UsageError("no workbench image has been built yet", "run `torchrig build` first")
    spec = session.spec
    ports = {
        s: getattr(spec.services, s).port or p
        for s, p in CONTAINER_PORTS.items()
        if getattr(spec.services, s).enabled
    }
    env_file = session.project_dir / "torchrig.env"
    wb = workbench_run(
        spec,
        session.resolution,
        session.host,
        image,
        workspace=session.project_dir,
        ports=ports,
        keys_file=state_dir(spec.project.name) / "authorized_keys",
        env_file=env_file if env_file.is_file() else None,
    )
    if args.format == "compose":
        text, default = render_compose(wb), session.project_dir / "compose.yaml"
    else:
        text = render_devcontainer(wb)
        default = session.project_dir / ".devcontainer" / "devcontainer.json"
    if args.stdout:
        print(text, end="")
        return 0
    target = args.output or default
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, text)
    print(f"wrote {target}")
    return 0
