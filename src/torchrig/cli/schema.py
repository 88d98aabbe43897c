"""`torchrig schema`: print the JSON schema of torchrig.toml.

Editors use it for completion and checking as you type (e.g. with Taplo or "Even Better
TOML": `#:schema ./torchrig.schema.json` at the top of the file); the descriptions are the
same ones `torchrig init` writes as comments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Save it with `torchrig schema > torchrig.schema.json`."


def spec_schema() -> dict[str, Any]:
    """The JSON schema of the spec, with the dialect and a title people recognise."""
    from torchrig.spec.model import Spec

    schema = Spec.model_json_schema()
    schema.pop("title", None)
    return {"$schema": SCHEMA_DIALECT, "title": "torchrig.toml", **schema}


def run(args: argparse.Namespace) -> int:
    from torchrig.cli.output import print_json

    print_json(spec_schema())
    return 0
