"""The image part of the plan: the build context file by file, the Dockerfile and the tag.

The tag is `torchrig/<project>:<variant>-<12 hex>`, the digest of every file the build sends
(Dockerfile, requirements, constraints, labels, CA certificates, torchrig's own files), so
unchanged inputs never rebuild. It is computed here, from the same file contents that
image/build.py then writes, so the tag `torchrig plan` prints is the tag `torchrig build`
makes. Pure: what comes from disk or the engine (the base image obtained, torchrig's own
files, the CA certificates) is passed in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.requirements import Requirement
from pydantic import BaseModel, ConfigDict, Field

from torchrig import __version__, contract
from torchrig.compat.model import Compat
from torchrig.compat.resolve import Resolution
from torchrig.image.dockerfile import ImageInputs, render_dockerfile
from torchrig.image.wheelserver import PROXY_BUILD_ARG
from torchrig.lock.inputs import is_guarded
from torchrig.lock.lockfile import Target, constraints_txt
from torchrig.plan.names import image_repository
from torchrig.spec.model import Spec

TAG_DIGEST_CHARS = 12
WRAPPER = "bin/torchrig"
WRAPPER_TEXT = f'#!/bin/sh\nexec {contract.VENV_PYTHON} -m torchrig.cli.main "$@"\n'


@dataclass(frozen=True)
class BaseRef:
    """The image the build builds FROM, as image/obtain.py found it."""

    image: str
    """ "name@sha256:…" (registry), a bootstrapped base's tag, or the spec's base.image."""
    components: tuple[str, ...]
    source: str
    """ "spec", "registry", "shared cache" or "bootstrap"."""


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ContextFile(_Out):
    path: str = Field(description="Path in the build context, e.g. requirements/torch.txt.")
    sha256: str
    size: int


class ImagePlan(_Out):
    repository: str = Field(description="torchrig/<project>")
    tag: str | None = Field(
        description="The full reference the build makes, torchrig/<project>:<variant>-<digest "
        "of the context>; null until it can be known (see pending)."
    )
    pending: list[str] = Field(
        default_factory=list, description="Why the tag is not known yet, with the fix."
    )
    variant: str
    base: str | None = Field(description="The image built FROM; null when not obtained yet.")
    base_source: str | None
    labels: dict[str, str] = Field(default_factory=dict)
    dockerfile: str | None = None
    context: list[ContextFile] = Field(default_factory=list)
    build_args: list[str] = Field(
        default_factory=list,
        description="Build arguments set at build time; their values are no input of the tag.",
    )
    # What the build writes, by context path: generated text and the CA certificates' bytes.
    # torchrig's own files are copied from the installed package and checked against
    # `context` (image/build.py). Not part of --json.
    texts: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)
    blobs: dict[str, bytes] = Field(default_factory=dict, exclude=True, repr=False)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_layers(spec: Spec, target: Target) -> list[tuple[str, str, list[str]]]:
    """(layer title, file name, requirement lines): GPU stack, then stack, then yours."""
    mine = {_normalise(Requirement(r).name) for r in spec.python.packages}
    torch_layer, stack_layer, user_layer = [], [], []
    for p in target.packages:
        marker = f" ; {p.marker}" if p.marker else ""
        line = f"{p.name}=={p.version}{marker} --hash=sha256:{p.sha256}"
        if is_guarded(p.name) and p.name != "nvidia-ml-py":
            torch_layer.append(line)
        elif _normalise(p.name) in mine:
            user_layer.append(line)
        else:
            stack_layer.append(line)
    layers = [
        ("torch layer: torch, triton and the CUDA libraries", "torch.txt", torch_layer),
        ("the stack: JupyterLab, NumPy, pandas, Transformers …", "stack.txt", stack_layer),
        ("your packages (python.packages)", "user.txt", user_layer),
    ]
    return [layer for layer in layers if layer[2]]


def lock_digest(target: Target) -> str:
    pins = "".join(f"{p.name}=={p.version}:{p.sha256}\n" for p in target.packages)
    return "sha256:" + hashlib.sha256(pins.encode()).hexdigest()


def labels(spec: Spec, spec_digest: str, resolution: Resolution, target: Target) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": f"torchrig workbench {spec.project.name}",
        "org.opencontainers.image.source": "torchrig",
        "org.opencontainers.image.version": __version__,
        "io.torchrig.spec-digest": spec_digest,
        "io.torchrig.lock-digest": lock_digest(target),
        "io.torchrig.torch": resolution.torch,
        "io.torchrig.variant": resolution.variant,
        "io.torchrig.cuda": resolution.cuda or "none",
        "io.torchrig.python": resolution.python,
        "io.torchrig.base": resolution.base.distribution,
    }


def workbench_tools(spec: Spec, compat: Compat, resolution: Resolution) -> tuple[str, ...]:
    """tmux, editors and htop for the "workbench" stack, as its base distribution has them."""
    dist = compat.distribution(resolution.base.distribution)
    if spec.python.stack != "workbench" or dist is None:
        return ()
    return tuple(dist.tools)


def file_entry(path: str, data: bytes) -> ContextFile:
    return ContextFile(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def context_digest(files: Iterable[ContextFile]) -> str:
    """The digest of a build context: each file's path and content digest, by path."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f.path.encode() + b"\0" + bytes.fromhex(f.sha256))
    return digest.hexdigest()


def image_plan(
    spec: Spec,
    spec_digest: str,
    compat: Compat,
    resolution: Resolution,
    target: Target | None,
    base: BaseRef | None,
    *,
    torchrig_files: tuple[ContextFile, ...],
    ca_certificates: tuple[tuple[str, bytes], ...],
    pending: list[str],
) -> ImagePlan:
    """torchrig_files: the installed package as the build copies it (paths under
    "torchrig/"); ca_certificates: (stem, PEM) of the spec's and the host's extra CAs.
    `pending`: reasons already known why no tag can be given (a missing or stale lock)."""
    repository = image_repository(spec)
    pending = list(pending)
    # The first thing missing is enough to say: without a lock the base is not looked up.
    if target is None and not pending:
        pending.append("no lock target for this variant: run `torchrig lock`")
    elif target is not None and base is None:
        pending.append("the base image is not obtained yet: `torchrig build` obtains it")
    elif target is not None and not torchrig_files:
        pending.append("torchrig's own files were not read")
    common = {
        "repository": repository,
        "variant": resolution.variant,
        "base": base.image if base else None,
        "base_source": base.source if base else None,
    }
    if target is None or base is None or pending:
        return ImagePlan(tag=None, pending=pending, **common)
    texts: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    layers = []
    for title, name, lines in split_layers(spec, target):
        texts[f"requirements/{name}"] = "\n".join(lines) + "\n"
        layers.append((title, f"requirements/{name}"))
    for i, (stem, pem) in enumerate(ca_certificates):
        blobs[f"ca-certificates/{i:02d}-{stem}.crt"] = pem
    texts[WRAPPER] = WRAPPER_TEXT
    texts["constraints.txt"] = constraints_txt(target)
    # The base as built on: "name@sha256:…" for a registry base, so the digest is on record.
    image_labels = {
        **labels(spec, spec_digest, resolution, target),
        "io.torchrig.base.image": base.image,
    }
    texts["image.json"] = json.dumps(image_labels, indent=2) + "\n"
    inputs = ImageInputs(
        base_image=base.image,
        distribution=resolution.base.distribution,
        mirror=resolution.base.mirror,
        components=base.components,
        python=resolution.python,
        flavour=spec.torch.flavour,
        cuda=resolution.cuda,
        system_packages=(*workbench_tools(spec, compat, resolution), *spec.base.packages),
        ca_certificates=tuple(sorted(p.rsplit("/", 1)[1] for p in blobs)),
        layers=tuple(layers),
        labels=image_labels,
    )
    dockerfile = render_dockerfile(inputs)
    texts["Dockerfile"] = dockerfile
    context = [file_entry(p, t.encode()) for p, t in texts.items()]
    context += [file_entry(p, b) for p, b in blobs.items()]
    context += list(torchrig_files)
    context.sort(key=lambda f: f.path)
    tag = f"{repository}:{resolution.variant}-{context_digest(context)[:TAG_DIGEST_CHARS]}"
    return ImagePlan(
        tag=tag,
        labels=image_labels,
        dockerfile=dockerfile,
        context=context,
        build_args=[PROXY_BUILD_ARG],
        texts=texts,
        blobs=blobs,
        **common,
    )
