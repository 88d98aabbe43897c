"""`torchrig up`: lock and build if needed, start the workbench, wait until it is healthy."""

from __future__ import annotations

import argparse
from pathlib import Path

from torchrig.cli.common import add_workbench_options, progress_printer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workbench_options(parser)
    parser.add_argument(
        "--workspace",
        type=Path,
        metavar="DIR",
        help="folder mounted at /workspace (default: the folder of torchrig.toml)",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="secrets (HF_TOKEN=…) passed to the container, never baked into the image "
        "(default: torchrig.env beside the spec, if present)",
    )
    parser.add_argument(
        "--install-engine",
        action="store_true",
        help="install Docker from the distribution when no container engine is present",
    )


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.common import session_from
    from torchrig.cli.output import print_json
    from torchrig.launch.session import engine_for
    from torchrig.launch.up import up

    session = session_from(args)
    say = progress_printer(args)
    if not any(e.reachable for e in session.host.engines) and args.engine is None:
        from torchrig.launch.install_engine import offer_engine_install

        if offer_engine_install(assume_yes=args.install_engine, progress=say):
            session = session_from(args)
    engine = engine_for(session, args.engine)
    running = up(session, engine, say, workspace=args.workspace, env_file=args.env_file)
    if args.json:
        print_json(
            {
                "name": running.name,
                "image": running.image,
                "engine": engine.name,
                "jupyter_url": running.jupyter_url,
                "ssh": running.ssh_command,
                "ports": running.ports,
                "user": running.user,
                "uid": running.uid,
                "gid": running.gid,
                "workspace": running.workspace,
                "state_volume": running.state_volume,
                "built": running.built,
                "seconds_to_healthy": running.seconds_to_healthy,
            }
        )
        return 0
    print(f"{running.name} is up ({running.image}, {engine.name})")
    if running.jupyter_url:
        print(f"  JupyterLab  {running.jupyter_url}")
    if running.ssh_command:
        print(f"  SSH         {running.ssh_command}")
    if "tensorboard" in running.ports:
        print(f"  TensorBoard http://127.0.0.1:{running.ports['tensorboard']}/")
    if "metrics" in running.ports:
        print(f"  Metrics     http://127.0.0.1:{running.ports['metrics']}/metrics")
    if "serve" in running.ports:  # a job listens there: torchrig run serve RUN
        print(f"  Serve       http://127.0.0.1:{running.ports['serve']}/ (torchrig run serve RUN)")
    owner = f"{running.uid}:{running.gid}"
    print(f"  Workspace   {running.workspace} → /workspace (files belong to {owner})")
    print(f"  State       volume {running.state_volume} → /home/{running.user}")
    return 0
