"""Where the base image comes from: the one place that decides.

The resolver (compat/resolve.py) chooses *which* base: a distribution ("ubuntu:noble") with
its registry image, or the spec's base.image. This module decides *how to get it*, in this
order, and says which in one progress line:

1. base.image from the spec: used as written (the spec pins it by digest).
2. The distribution's registry image (compat data, e.g. docker.io/library/ubuntu:noble), or
   the same path on the mirror in sources.registry, pulled by the engine and built on as
   `name@sha256:…`: no root needed, and the digest is recorded in the workbench image's
   labels (io.torchrig.base.image). Skipped when sources.registry = "none".
3. When no registry answers: a bootstrapped base from the shared cache that
   `sudo torchrig prepare` fills (/var/cache/torchrig/bases), checked before use
   (image/shared_cache.py): no root needed either.
4. Else bootstrap it: into the shared cache when this user may write there, else into the
   per-user cache. Only this step needs root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torchrig.image import registry, shared_cache
from torchrig.image.base import Bootstrapper

if TYPE_CHECKING:
    from torchrig.compat.resolve import BaseChoice
    from torchrig.engine.base import Engine, Progress


@dataclass(frozen=True)
class Base:
    image: str
    """What the Dockerfile builds FROM: "name@sha256:…" or a bootstrapped base's tag."""
    components: tuple[str, ...]
    source: str
    """"spec", "registry", "shared cache" or "bootstrap"."""


def obtain_base(
    choice: BaseChoice,
    components: tuple[str, ...],
    arch: str,
    engine: Engine,
    progress: Progress | None,
    *,
    registry_setting: str = registry.AUTO,
    allow_unverified: bool = False,
    bootstrapper: Bootstrapper | None = None,
) -> Base:
    say = progress or (lambda _line: None)
    if choice.distribution == "image":
        return Base(choice.image, (), "spec")
    if registry_setting != registry.NONE:
        ref = registry.registry_ref(choice.image, registry_setting)
        pinned = registry.pin(engine, ref, say)
        if pinned is not None:
            say(f"base: {ref}, pinned as {pinned}")
            return Base(pinned, components, "registry")
    boot = bootstrapper or Bootstrapper()
    shared = shared_cache.bases_dir()
    if shared_cache.readable_dir(shared):
        found = boot.cached(
            choice.distribution,
            choice.mirror,
            arch,
            shared,
            engine,
            components=components,
            progress=say,
            allow_unverified=allow_unverified,
        )
        if found is not None:
            return Base(found.tag, components, "shared cache")
    # Root with a shared cache fills it for everyone; anyone else uses their own cache.
    target = shared if shared_cache.writable_dir(shared) and boot.is_root() else None
    made = boot.bootstrap(
        choice.distribution,
        choice.mirror,
        arch,
        target,
        engine,
        components=components,
        progress=say,
        allow_unverified=allow_unverified,
    )
    return Base(made.tag, components, "bootstrap")
