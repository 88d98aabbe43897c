"""`torchrig serve RUN`: placeholder while the server lands (issue 16)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN")


def run(args: argparse.Namespace) -> int:
    return 2
