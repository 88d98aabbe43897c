"""The reference of torchrig.toml, generated from the model: docs/spec-reference.md.

    python -m torchrig.spec.reference > docs/spec-reference.md

A unit test compares the committed file with this output, so the docs cannot drift from
the model: change a field or its description, then regenerate.
"""

from __future__ import annotations

import re
import sys
import types
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from torchrig.spec.load import parse_spec
from torchrig.spec.model import Spec, tables
from torchrig.spec.template import toml_value

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

REGENERATE = "python -m torchrig.spec.reference > docs/spec-reference.md"

# A realistic spec that changes something in most tables; it must validate (checked below).
EXAMPLE = """\
[project]
name = "tickets-nlp"

[torch]
version = "2.9"          # newest 2.9.x
variant = "auto"         # the newest CUDA build the host's driver and GPUs can run
flavour = "devel"        # nvcc, to build a CUDA extension
torchaudio = false

[python]
version = "3.12"
packages = ["peft>=0.13", "wandb", "datasets==3.6.0"]

[base]
distribution = "ubuntu:noble"
packages = ["ffmpeg", "git-lfs"]

[user]
authorized_keys = ["~/.ssh/id_ed25519.pub"]

[services.jupyter]
port = 8890

[services.ssh]
enabled = false

[services.tensorboard]
enabled = true

[resources]
gpus = ["0", "1"]
shm = "32g"
memory = "200g"
cpus = 24

[sources]
index = "https://pypi.internal.example/simple"
find_links = ["/srv/wheelhouse"]
hf_endpoint = "https://hf-mirror.internal.example"

[cache]
huggingface = "user"     # one Hugging Face cache for all my workbenches

[[mounts]]
source = "/srv/datasets/tickets"
target = "/data/tickets"  # read-only unless read_only = false

[[mounts]]
source = "~/checkpoints"
target = "/checkpoints"
read_only = false
"""


def render_reference() -> str:
    parse_spec(EXAMPLE, path="EXAMPLE in torchrig/spec/reference.py")
    out = [
        "# torchrig.toml reference",
        "",
        f"<!-- Generated from src/torchrig/spec/model.py by `{REGENERATE}`; "
        "do not edit by hand. -->",
        "",
        "`torchrig.toml` says what one workbench is made of. Only `[project]` and its `name` "
        "are required; every other key has the default shown here. Unknown keys are errors "
        "(a typo is never silently ignored), and every error names the file, line and key.",
        "",
        "`torchrig init` writes a file with every key at its default and its description as "
        "a comment; `torchrig schema` prints the JSON schema, for editors.",
        "",
        "## Tables",
        "",
    ]
    sections = [(prefix, model, doc) for prefix, model, doc in tables() if prefix]
    for prefix, _, doc in sections:
        indent = "  " * (len(prefix) - 1)
        out.append(f"{indent}- [`[{'.'.join(prefix)}]`](#{_anchor(prefix)}): {doc}")
    for name, field in Spec.model_fields.items():
        if _table_list(field.annotation) is not None:
            out.append(f"- [`[[{name}]]`](#{name}): {field.description}")
    for prefix, model, doc in sections:
        out += ["", f"## [{'.'.join(prefix)}]", "", doc]
        rows = [
            (name, field)
            for name, field in model.model_fields.items()
            if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel))
        ]
        if not rows:
            children = [f"`[{'.'.join((*prefix, name))}]`" for name in model.model_fields]
            out += ["", "Its tables: " + ", ".join(children) + "."]
            continue
        out += ["", "| Key | Type | Default | Description |", "|---|---|---|---|"]
        for name, field in rows:
            cells = [f"`{name}`", _type(field), _default(field), _cell(field.description or "")]
            out.append("| " + " | ".join(cells) + " |")
    for name, field in Spec.model_fields.items():
        item = _table_list(field.annotation)
        if item is None:
            continue
        out += ["", f"## [[{name}]]", "", field.description or ""]
        out += ["", "| Key | Type | Default | Description |", "|---|---|---|---|"]
        for key, sub in item.model_fields.items():
            cells = [f"`{key}`", _type(sub), _default(sub), _cell(sub.description or "")]
            out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "## Example",
        "",
        "```toml",
        EXAMPLE.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(out)


def _table_list(annotation: Any) -> type[BaseModel] | None:
    """The item model of a list of tables ([[mounts]]), else None."""
    args = get_args(annotation)
    if get_origin(annotation) is list and args and isinstance(args[0], type):
        return args[0] if issubclass(args[0], BaseModel) else None
    return None


def _anchor(prefix: tuple[str, ...]) -> str:
    # GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens.
    return re.sub(r"[^a-z0-9 _-]", "", f"[{'.'.join(prefix)}]".lower()).replace(" ", "-")


def _cell(text: str) -> str:
    # Descriptions are plain text: keep "<variant>" from reading as HTML and "*" as emphasis.
    for plain, escaped in (("|", "\\|"), ("<", "&lt;"), ("*", "\\*"), ("\n", " ")):
        text = text.replace(plain, escaped)
    return text


def _type(field: FieldInfo) -> str:
    text = _describe(field.annotation)
    low = high = None
    for item in field.metadata:
        low = getattr(item, "ge", None) if low is None else low
        high = getattr(item, "le", None) if high is None else high
    if low is not None and high is not None:
        text += f" ({low} to {high})"
    elif low is not None:
        text += f" (at least {low})"
    elif high is not None:
        text += f" (at most {high})"
    return text


def _describe(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return _or([_describe(member) for member in get_args(annotation)])
    if origin is Literal:
        return _or([f'`"{choice}"`' for choice in get_args(annotation)])
    if origin is list:
        return f"list of {_describe(get_args(annotation)[0])}s"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    return f"`{toml_value(field.get_default(call_default_factory=True))}`"


def main() -> None:
    # Bytes, so the file is UTF-8 whatever the locale of the shell that redirects it.
    sys.stdout.buffer.write(render_reference().encode("utf-8"))


if __name__ == "__main__":
    main()
