"""`torchrig shell`: an interactive login shell in the workbench, as the workbench user."""

from __future__ import annotations

import argparse

from torchrig.cli.common import add_engine_option, add_host_option, add_spec_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_option(parser)
    add_host_option(parser)
    add_engine_option(parser)


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.exec import exec_in_workbench

    return exec_in_workbench(args, ["bash", "-l"], interactive=True)
