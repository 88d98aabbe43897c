"""Base images from a registry, pinned by digest: the tag is resolved once, the build names
the digest.

    ref = registry_ref("docker.io/library/ubuntu:noble", "mirror.example:5000")
    # -> "mirror.example:5000/library/ubuntu:noble"
    pinned = pin(engine, ref, say)
    # -> "mirror.example:5000/library/ubuntu@sha256:…", or None when no registry answers

Why through the engine (`pull`, then the image's RepoDigests) and not an HTTP HEAD of the
manifest: the engine already holds the user's registry credentials, its mirrors
(`registry-mirrors` in daemon.json, registries.conf) and its CA and proxy settings, and the
build needs the image in the engine anyway. The digest is the one of the manifest the engine
pulled, so `FROM name@sha256:…` builds on exactly what was checked, and the engine verifies
the content against that digest on every pull.

Registries on the loopback address (a local mirror, the tests' registry) speak plain HTTP:
Docker allows that for 127.0.0.0/8 by default; Podman needs --tls-verify=false, which the
engine adds for those hosts only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from torchrig.errors import TorchrigError
from torchrig.freeport import is_loopback as is_loopback_host

if TYPE_CHECKING:
    from torchrig.engine.base import Engine, Progress

DEFAULT_DOMAIN = "docker.io"
# sources.registry: "auto" (the image's own registry, through the engine's mirrors), "none"
# (never pull: bootstrap), or host[:port][/path] of a mirror that serves Docker Hub's paths.
AUTO, NONE = "auto", "none"
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def split_domain(ref: str) -> tuple[str, str]:
    """("docker.io", "library/ubuntu:noble") from "ubuntu:noble" or the full reference: the
    engine's own normalisation (a first part with a dot, a colon or "localhost" is a host)."""
    first, sep, rest = ref.partition("/")
    if sep and (("." in first or ":" in first) or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, ref
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


def repository(ref: str) -> str:
    """The reference without tag or digest, normalised: "docker.io/library/ubuntu"."""
    domain, path = split_domain(ref.split("@", 1)[0])
    name = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    return f"{domain}/{name}"


def registry_ref(image: str, registry: str) -> str:
    """`image` as the configured registry serves it: a mirror replaces Docker Hub's host."""
    if registry in (AUTO, ""):
        return image
    domain, path = split_domain(image)
    if domain != DEFAULT_DOMAIN:
        return image  # a mirror stands in for Docker Hub only
    return f"{registry.rstrip('/')}/{path}"


def is_loopback(ref: str) -> bool:
    """Whether the reference's registry is on this machine (plain HTTP is then no risk)."""
    domain, _ = split_domain(ref)
    return is_loopback_host(domain.rsplit(":", 1)[0])


def digest_of(repo_digests: list[str], ref: str) -> str | None:
    """The RepoDigests entry ("name@sha256:…") of `ref`'s repository, in `ref`'s spelling
    (Docker shortens Docker Hub names to "ubuntu@…", Podman writes them out in full)."""
    want = repository(ref)
    name = ref.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    for entry in repo_digests:
        entry_name, sep, digest = entry.partition("@")
        if sep and DIGEST_RE.fullmatch(digest) and repository(entry_name) == want:
            return f"{name}@{digest}"
    return None


def pin(engine: Engine, ref: str, say: Progress) -> str | None:
    """Pull `ref` and return it pinned ("name@sha256:…"), or None (with one line saying why)
    when no registry answers: the caller then falls back to a bootstrapped base."""
    try:
        engine.pull(ref, tls_verify=not is_loopback(ref))
        found = engine.image_inspect(ref).get("RepoDigests") or []
    except TorchrigError as exc:
        say(f"no registry base: pulling {ref} failed ({exc.message})")
        return None
    pinned = digest_of([str(d) for d in found], ref)
    if pinned is None:
        say(f"no registry base: {engine.name} reports no digest for {ref}")
    return pinned
