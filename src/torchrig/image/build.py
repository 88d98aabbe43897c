"""Build the workbench image the plan describes: wheels, context, engine — tagged by content.

The plan (plan/image.py) has already rendered every file of the build context and computed
the tag from them: a digest of everything that goes into the build (Dockerfile,
requirements, torchrig's own files), so an unchanged spec and lock never rebuild: `build`
finds the tag and stops. This module writes exactly those files, checks that the context it
made has the plan's digest, and builds. The wheels come from the host's hash-checked cache
through a local server, so no layer holds a wheel and a rebuild downloads nothing it already
has. The server's address is no input: it travels as a build argument the layer cache
ignores (image/wheelserver.py).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torchrig
from torchrig.compat.model import Compat
from torchrig.engine.base import Engine
from torchrig.errors import ToolError, UsageError
from torchrig.image.wheels import fetch_all, link_into
from torchrig.image.wheelserver import PROXY_BUILD_ARG, UV_PATH, Shelf, serve
from torchrig.lock.lockfile import LockFile, Target
from torchrig.lock.make import check_lock
from torchrig.plan.image import (
    TAG_DIGEST_CHARS,
    WRAPPER,
    ContextFile,
    ImagePlan,
    context_digest,
    file_entry,
    split_layers,
)
from torchrig.spec.model import Spec

Progress = Callable[[str], None]
__all__ = ["BuildResult", "build_image", "locked_target", "split_layers"]


@dataclass(frozen=True)
class BuildResult:
    tag: str
    built: bool
    seconds: float
    downloaded_bytes: int
    dockerfile: str


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


def _copy_torchrig(dest: Path) -> None:
    source = Path(torchrig.__file__).parent
    shutil.copytree(
        source, dest / "torchrig", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def written_context(context: Path) -> list[ContextFile]:
    return [
        file_entry(p.relative_to(context).as_posix(), p.read_bytes())
        for p in context.rglob("*")
        if p.is_file()
    ]


def write_context(image: ImagePlan, context: Path) -> None:
    """The plan's files, byte for byte, and torchrig's own package, checked against them."""
    for path, text in image.texts.items():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_bytes(text.encode())
    for path, data in image.blobs.items():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_bytes(data)
    (context / WRAPPER).chmod(0o755)
    _copy_torchrig(context)
    digest = context_digest(written_context(context))[:TAG_DIGEST_CHARS]
    if image.tag is None or not image.tag.endswith(f"-{digest}"):
        # torchrig's files changed between planning and copying (an upgrade mid-build).
        raise ToolError(
            f"the build context's digest {digest} is not the one planned for {image.tag}",
            "run the command again",
        )


def build_image(
    image: ImagePlan,
    target: Target,
    engine: Engine,
    *,
    no_cache: bool = False,
    progress: Progress | None = None,
) -> BuildResult:
    """Build `image.tag` from the plan's context; the wheels are the lock target's."""
    say = progress or (lambda line: None)
    if image.tag is None or image.dockerfile is None:
        raise UsageError(
            "the image cannot be built yet: " + "; ".join(image.pending),
            "run `torchrig lock`, then build again",
        )
    tag, dockerfile = image.tag, image.dockerfile
    start = time.perf_counter()
    if not no_cache and engine.image_exists(tag):
        say(f"{tag} is up to date (nothing changed since it was built)")
        return BuildResult(tag, False, time.perf_counter() - start, 0, dockerfile)
    with tempfile.TemporaryDirectory(prefix="torchrig-build-") as tmp:
        context, wheels = Path(tmp) / "context", Path(tmp) / "wheels"
        context.mkdir()
        wheels.mkdir()
        write_context(image, context)
        # The download runs beside the build: the engine does the base and apt layers while
        # the host fetches, and the server holds a wheel request until its file is here.
        shelf = Shelf(wheels, [p.file for p in target.packages], tools=_uv_for(target))
        with ThreadPoolExecutor(max_workers=1) as pool:
            fetching = pool.submit(
                fetch_all,
                target.packages,
                progress=say,
                on_ready=lambda path: link_into([path], wheels),
            )
            fetching.add_done_callback(lambda _done: shelf.finish())
            with serve(shelf) as proxy:
                try:
                    engine.build(
                        context,
                        context / "Dockerfile",
                        tag,
                        build_args={PROXY_BUILD_ARG: proxy},
                        no_cache=no_cache,
                        network="host",
                        progress=say,
                    )
                except BaseException:
                    # A failed download (a hash that does not match) is the better reason.
                    if fetching.done() and fetching.exception() is not None:
                        fetching.result()
                    raise
            _files, downloaded = fetching.result()
    return BuildResult(tag, True, time.perf_counter() - start, downloaded, dockerfile)


def _uv_for(target: Target) -> dict[str, Path]:
    """The host's uv for the wheel layers, when it can run in the image: Linux, same
    architecture (else the layers fall back to pip; image/dockerfile.py)."""
    import platform
    import sys

    from torchrig.errors import HostError
    from torchrig.lock.uv import uv_binary

    if sys.platform != "linux" or platform.machine() != target.platform.split("-", 1)[0]:
        return {}
    try:
        return {UV_PATH: Path(uv_binary())}
    except HostError:
        return {}
