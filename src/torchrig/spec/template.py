"""The commented torchrig.toml that `torchrig init` writes.

Every key is written at its default with its description above it, so a person sees all
there is to change without opening the docs; the header and a few "This host:" notes say
what the machine the file was written for has. The comments come from the model's field
descriptions, so the file, `torchrig schema` and docs/spec-reference.md never disagree.

`render_spec` is pure (no clock, no environment): the same name and facts give the same
text, which the golden tests in tests/golden/init/ pin down.
"""

from __future__ import annotations

import json
import re
import textwrap
import unicodedata
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from torchrig.spec.model import NAME_RE, Project, Spec, tables
from torchrig.units import human_bytes

if TYPE_CHECKING:
    from torchrig.host.facts import Gpu, HostFacts
    from torchrig.host.pipconfig import HostSources

WIDTH = 90
FALLBACK_NAME = "workbench"


def project_name_from(folder: str) -> str:
    """A valid project name made from a folder name: "My Project (v2)" → "my-project-v2"."""
    ascii_name = unicodedata.normalize("NFKD", folder).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9_.-]+", "-", ascii_name.lower())
    name = re.sub(r"-{2,}", "-", name)
    name = name.lstrip("_.-")[:63].rstrip("_.-")
    return name if NAME_RE.fullmatch(name) else FALLBACK_NAME


def render_spec(name: str, host: HostFacts, sources: HostSources | None = None) -> str:
    """The commented spec for project `name`, with notes about `host`; [sources] takes what
    this machine's pip and uv are configured with (`sources`), each with where it came from.

    Raises pydantic's ValidationError when `name` is not a valid project name.
    """
    spec = Spec(project=Project(name=name))
    values = spec.model_dump(mode="python")
    found = sources.found if sources else {}
    for key, item in found.items():
        values["sources"][key] = item.value
    notes = _host_notes(host)
    lines = [
        f"# torchrig.toml: the workbench of project {json.dumps(name)}.",
        "#",
        "# Written by `torchrig init` for a host with:",
        *(
            f"#   {part}"
            for line in _host_summary(host)
            for part in textwrap.wrap(
                line, width=WIDTH - 4, subsequent_indent="  ", break_long_words=False
            )
        ),
        "#",
        *_comment(
            "Every key is written out at its default, so you can see what there is to "
            "change; a key you delete takes the same default."
        ),
        *_comment(
            "`torchrig plan` shows what this file resolves to (the PyTorch build, the image, "
            "the run flags) and why, changing nothing; `torchrig schema` prints its JSON "
            "schema."
        ),
    ]
    for prefix, model, description in tables():
        if not prefix:
            continue
        keys = _scalar_fields(model)
        lines.append("")
        if not keys:  # a table of tables, like [services]: say what it groups
            lines += _comment(f"[{'.'.join(prefix)}] {description}")
            continue
        lines += _comment(description)
        if prefix == ("sources",) and sources is not None:
            if found:
                lines += _comment(
                    'Values marked "From" were taken from this machine\'s pip and uv '
                    "configuration by `torchrig init`."
                )
            for line in sources.skipped:
                lines += _comment(f"Left out: {line}.")
        lines.append(f"[{'.'.join(prefix)}]")
        table_values: Any = values
        for part in prefix:
            table_values = table_values[part]
        for key in keys:
            field = model.model_fields[key]
            lines.append("")
            lines += _comment(field.description or "")
            for note in notes.get((*prefix, key), []):
                lines += _comment(f"This host: {note}")
            if prefix == ("sources",) and key in found:
                lines += _comment(f"From {found[key].origin}.")
            lines.append(f"{key} = {toml_value(table_values[key])}")
    lines += ["", *_MOUNTS_EXAMPLE]
    return "\n".join(lines) + "\n"


# [[mounts]] is a list of tables, so there is no default to write out: an example instead.
_MOUNTS_EXAMPLE = [
    "# Host folders or files given to the workbench beside /workspace, one [[mounts]] table",
    "# each (read-only unless read_only = false); checked when the workbench starts:",
    "#",
    "# [[mounts]]",
    '# source = "/data/imagenet"   # an absolute path or ~/…',
    '# target = "/data/imagenet"   # not /workspace, /home, /etc, /usr, /opt/venv, /run …',
    "# read_only = true",
]


def toml_value(value: object) -> str:
    """A TOML literal for the plain values a spec holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes (\" \\ \n \uXXXX) are all valid in a TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML literal for {type(value).__name__}")


def _scalar_fields(model: type[BaseModel]) -> list[str]:
    return [
        name
        for name, field in model.model_fields.items()
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel))
    ]


def _comment(text: str) -> list[str]:
    wrapped = textwrap.wrap(text, width=WIDTH - 2, break_long_words=False, break_on_hyphens=False)
    return [f"# {line}" for line in wrapped] or ["#"]


# --- what the host has ---------------------------------------------------------------------


def _indexes(numbers: list[int]) -> str:
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(str(n) for n in numbers)


def _gpu_groups(gpus: list[Gpu]) -> list[tuple[list[int], Gpu]]:
    """Alike GPUs together, so an 8-GPU server reads as one line."""

    def kind(gpu: Gpu) -> tuple[object, ...]:
        return (gpu.name, gpu.cc, gpu.memory_mib, gpu.mig)

    groups: list[tuple[list[int], Gpu]] = []
    for gpu in sorted(gpus, key=lambda g: g.index):
        if groups and kind(groups[-1][1]) == kind(gpu):
            groups[-1][0].append(gpu.index)
        else:
            groups.append(([gpu.index], gpu))
    return groups


def _host_summary(host: HostFacts) -> list[str]:
    lines = []
    system = host.system
    parts = [p for p in (system.os, system.arch) if p]
    if system.cpus:
        parts.append(f"{system.cpus} CPUs")
    if system.memory_bytes:
        parts.append(f"{human_bytes(system.memory_bytes, binary=True)} RAM")
    if system.shm_bytes:
        parts.append(f"/dev/shm {human_bytes(system.shm_bytes, binary=True)}")
    if parts:
        lines.append("system: " + ", ".join(parts))
    for indexes, gpu in _gpu_groups(host.gpus):
        label = "GPU" if len(indexes) == 1 else "GPUs"
        count = f"{len(indexes)} × " if len(indexes) > 1 else ""
        details = [f"compute capability {gpu.cc}" if gpu.cc else "compute capability unknown"]
        if gpu.memory_mib:
            details.append(
                human_bytes(gpu.memory_mib << 20, binary=True)
                + (" each" if len(indexes) > 1 else "")
            )
        if gpu.mig:
            details.append("MIG on")
        lines.append(f"{label} {_indexes(indexes)}: {count}{gpu.name} ({', '.join(details)})")
    if host.driver is not None:
        runs = f", runs CUDA up to {host.driver.cuda}" if host.driver.cuda else ""
        lines.append(f"NVIDIA driver: {host.driver.version}{runs}")
    if not host.gpus:
        lines.append(
            'no NVIDIA GPU found: torch.variant = "auto" resolves to cpu here; plan for a '
            "GPU server with --host FILE (saved there with `torchrig host --json`)"
        )
    engines = []
    for engine in host.engines:
        version = engine.server_version or engine.client_version
        if not engine.present:
            engines.append(f"{engine.name} not installed")
        elif not engine.reachable:
            why = f": {engine.error}" if engine.error else ""
            why = why if len(why) <= 70 else why[:69] + "…"
            engines.append(f"{engine.name} {version} (not reachable{why})".replace("  ", " "))
        else:
            extras = [e for e in ("rootless" if engine.rootless else "",) if e]
            if engine.nvidia_runtime or engine.cdi_devices:
                extras.append("NVIDIA toolkit")
            tail = f" ({', '.join(extras)})" if extras else ""
            engines.append(f"{engine.name} {version}{tail}".replace("  ", " "))
    if engines:
        lines.append("container engines: " + "; ".join(engines))
    return lines


def _host_notes(host: HostFacts) -> dict[tuple[str, ...], list[str]]:
    """Short facts shown next to the keys they bear on."""
    notes: dict[tuple[str, ...], list[str]] = {}
    gpus = sorted(host.gpus, key=lambda g: g.index)
    if gpus:
        ccs = sorted({g.cc for g in gpus if g.cc})
        driver = host.driver
        what = []
        if driver is not None:
            what.append(
                f"driver {driver.version}"
                + (f" runs CUDA up to {driver.cuda}" if driver.cuda else "")
            )
        if ccs:
            gpus_have = "the GPU has" if len(gpus) == 1 else "the GPUs have"
            what.append(f"{gpus_have} compute capability {', '.join(ccs)}")
        notes[("torch", "variant")] = [
            "; ".join(what) + ("; " if what else "") + '`torchrig plan` shows the build "auto" '
            "picks."
        ]
        count = f"{len(gpus)} GPU" + ("s" if len(gpus) > 1 else "")
        label = "index" if len(gpus) == 1 else "indexes"
        notes[("resources", "gpus")] = [f"{count}, {label} {_indexes([g.index for g in gpus])}."]
    else:
        notes[("torch", "variant")] = ['no NVIDIA GPU, so "auto" resolves to cpu here.']
        notes[("resources", "gpus")] = [
            'no NVIDIA GPU; "all" takes every GPU of the machine the workbench runs on.'
        ]
    system = host.system
    if system.memory_bytes:
        shm = (
            f" (its own /dev/shm is {human_bytes(system.shm_bytes, binary=True)})"
            if system.shm_bytes
            else ""
        )
        notes[("resources", "shm")] = [
            f"{human_bytes(system.memory_bytes, binary=True)} of RAM{shm}."
        ]
        notes[("resources", "memory")] = [
            f"{human_bytes(system.memory_bytes, binary=True)} of RAM."
        ]
    if system.cpus:
        notes[("resources", "cpus")] = [f"{system.cpus} CPUs."]
    if system.user:
        ids = f" (uid {system.uid}, gid {system.gid})" if system.uid is not None else ""
        root = ', so "auto" means "rig"' if system.uid == 0 or system.user == "root" else ""
        notes[("user", "name")] = [f"you are {json.dumps(system.user)}{ids}{root}."]
    return notes
