"""Build the workbench image: base, wheels, context, Dockerfile, engine — tagged by content.

The tag is a digest of everything that goes into the build (Dockerfile, requirements,
torchrig's own files), so an unchanged spec and lock never rebuild: `build` finds the tag
and stops. The wheels come from the host's hash-checked cache through a local server, so
no layer holds a wheel and a rebuild downloads nothing it already has. The server's address
is no input: it travels as a build argument the layer cache ignores (image/wheelserver.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

import torchrig
from torchrig import __version__, userfiles
from torchrig.compat.model import Compat
from torchrig.compat.resolve import Resolution
from torchrig.engine.base import Engine
from torchrig.errors import UsageError
from torchrig.image.dockerfile import ImageInputs, render_dockerfile
from torchrig.image.wheels import fetch_all, link_into
from torchrig.image.wheelserver import PROXY_BUILD_ARG, serve
from torchrig.lock.inputs import is_guarded
from torchrig.lock.lockfile import LockFile, Target, constraints_txt
from torchrig.lock.make import check_lock
from torchrig.spec.model import Spec

Progress = Callable[[str], None]
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


@dataclass(frozen=True)
class BuildResult:
    tag: str
    built: bool
    seconds: float
    downloaded_bytes: int
    dockerfile: str


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


def _ca_files(spec: Spec, project: Path) -> list[tuple[str, bytes]]:
    """(name, PEM) of the spec's extra CAs and the host's local ones (TLS-inspecting
    proxies, mirrors). The spec's go into the owner's image: read with their rights."""
    found = []
    for name in spec.sources.ca_certificates:
        path = userfiles.expand(name, project)
        fix = "point it at a PEM certificate file the project's owner may read"
        text = userfiles.read_text(path, project, "sources.ca_certificates", fix)
        if "BEGIN CERTIFICATE" not in text:
            raise UsageError(f"sources.ca_certificates: {path} is not a PEM certificate", fix)
        found.append((path.stem, text.encode()))
    if HOST_CA_DIR.is_dir():
        found += [
            (p.stem, p.read_bytes()) for p in sorted(HOST_CA_DIR.rglob("*.crt")) if p.is_file()
        ]
    return found


def _copy_torchrig(dest: Path) -> None:
    source = Path(torchrig.__file__).parent
    shutil.copytree(
        source, dest / "torchrig", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    wrapper = dest / "bin" / "torchrig"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text('#!/bin/sh\nexec /opt/venv/bin/python -m torchrig.cli.main "$@"\n')
    wrapper.chmod(0o755)


def context_digest(context: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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


def locked_target(spec: Spec, compat: Compat, lock: LockFile | None, variant: str) -> Target:
    """The lock target for this build, refusing a missing or stale lock."""
    if lock is None:
        raise UsageError("there is no torchrig.lock", "run `torchrig lock` first")
    problems = check_lock(lock, spec, compat)
    if problems:
        raise UsageError(
            "torchrig.toml no longer matches torchrig.lock: " + "; ".join(problems),
            "run `torchrig lock` to update the lock, then build again",
        )
    target = lock.target(variant)
    if target is None:
        have = ", ".join(t.variant for t in lock.targets)
        raise UsageError(
            f"torchrig.lock has targets {have}, but this host needs {variant}",
            f"run `torchrig lock --variant {variant}` (add --variant for each target you need)",
        )
    return target


def build_image(
    spec: Spec,
    spec_digest: str,
    resolution: Resolution,
    target: Target,
    base_image: str,
    components: tuple[str, ...],
    engine: Engine,
    *,
    no_cache: bool = False,
    progress: Progress | None = None,
    project: Path | None = None,
    tools: tuple[str, ...] = (),
) -> BuildResult:
    """Build the image; `tools` are the distribution's terminal programs (tmux, editors,
    htop) that the "workbench" stack adds beside the spec's own base.packages."""
    say = progress or (lambda line: None)
    start = time.perf_counter()
    files, downloaded = fetch_all(target.packages, progress=say)
    with tempfile.TemporaryDirectory(prefix="torchrig-build-") as tmp:
        context, wheels = Path(tmp) / "context", Path(tmp) / "wheels"
        (context / "requirements").mkdir(parents=True)
        link_into(files.values(), wheels)
        layers = []
        for title, name, lines in split_layers(spec, target):
            (context / "requirements" / name).write_text("\n".join(lines) + "\n")
            layers.append((title, f"requirements/{name}"))
        cas = _ca_files(spec, project or Path.cwd())
        if cas:
            (context / "ca-certificates").mkdir()
            for i, (stem, pem) in enumerate(cas):
                (context / "ca-certificates" / f"{i:02d}-{stem}.crt").write_bytes(pem)
        _copy_torchrig(context)
        (context / "constraints.txt").write_text(constraints_txt(target))
        # The base as built on: "name@sha256:…" for a registry base, so the digest is on record.
        image_labels = {
            **labels(spec, spec_digest, resolution, target),
            "io.torchrig.base.image": base_image,
        }
        (context / "image.json").write_text(json.dumps(image_labels, indent=2) + "\n")
        inputs = ImageInputs(
            base_image=base_image,
            distribution=resolution.base.distribution,
            mirror=resolution.base.mirror,
            components=components,
            python=resolution.python,
            flavour=spec.torch.flavour,
            cuda=resolution.cuda,
            system_packages=(*tools, *spec.base.packages),
            ca_certificates=tuple(sorted(p.name for p in (context / "ca-certificates").glob("*")))
            if cas
            else (),
            layers=tuple(layers),
            labels=image_labels,
        )
        dockerfile = render_dockerfile(inputs)
        (context / "Dockerfile").write_text(dockerfile)
        tag = f"torchrig/{spec.project.name}:{resolution.variant}-{context_digest(context)[:12]}"
        if not no_cache and engine.image_exists(tag):
            say(f"{tag} is up to date (nothing changed since it was built)")
            return BuildResult(tag, False, time.perf_counter() - start, downloaded, dockerfile)
        with serve(wheels) as proxy:
            engine.build(
                context,
                context / "Dockerfile",
                tag,
                build_args={PROXY_BUILD_ARG: proxy},
                no_cache=no_cache,
                network="host",
                progress=say,
            )
    return BuildResult(tag, True, time.perf_counter() - start, downloaded, dockerfile)
