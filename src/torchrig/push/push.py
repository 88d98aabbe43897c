"""`torchrig push`: send the built image to a registry and record the digest it got.

The engine pushes with its own login, mirrors and certificates (`docker login`, `podman
login`, daemon.json, registries.conf): torchrig never sees a registry password. The digest
recorded is the one the registry stores (Docker: the daemon's RepoDigests after the push;
Podman: --digestfile), so a cluster that pulls `name@sha256:…` gets these exact bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from torchrig.engine.base import Engine, Progress
from torchrig.errors import UsageError
from torchrig.image.registry import is_loopback, split_domain
from torchrig.push.record import PushedImage, record_push

# The distribution reference grammar (github.com/distribution/reference, reference.go):
# lower-case path components joined by "/", separators ".", "_", "__" or runs of "-".
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
EXAMPLE = "e.g. registry.example.com:5000/team/demo"


@dataclass(frozen=True)
class Target:
    name: str
    """host[:port]/path — always with the registry host (docker.io spelled out)."""
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


def parse_target(text: str, image: str) -> Target:
    """REGISTRY/NAME[:TAG] → Target; the tag defaults to the local image's own tag
    (<variant>-<content digest>), so the registry's tag says which build it is."""
    if "@" in text:
        raise UsageError(
            f"{text!r} names a digest: push takes where to push to, the registry makes the digest",
            f"give REGISTRY/NAME[:TAG], {EXAMPLE}",
        )
    name, tag = text, image.rpartition(":")[2]
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = text.rpartition(":")
    if not NAME_RE.fullmatch(name):
        hint = " (names are lower case)" if name != name.lower() else ""
        raise UsageError(
            f"{text!r} is not a registry name{hint}",
            f"give REGISTRY/NAME[:TAG] with lower-case letters, digits, '.', '_', '-', {EXAMPLE}",
        )
    if not TAG_RE.fullmatch(tag):
        raise UsageError(
            f"{tag!r} is not an image tag",
            "a tag is letters, digits, '_', '.' and '-', at most 128, not starting with . or -",
        )
    domain, path = split_domain(name)
    return Target(name=f"{domain}/{path}", tag=tag)


def push(
    engine: Engine, image: str, target: Target, project_dir: Path, say: Progress | None = None
) -> tuple[PushedImage, Path]:
    """Push the Plan's `image` to `target` and record it in torchrig.images beside the lock.

    Raises UsageError (exit 2) when the image is not built; RegistryUnreachable and
    RegistryRefused (exit 5) from the engine when the registry does not take it."""
    if not engine.image_exists(image):
        raise UsageError(
            f"the image {image} is not built (with {engine.name})",
            "run `torchrig build` first: push sends exactly the build the spec and lock describe",
        )
    if say is not None:
        say(f"pushing {image} to {target.ref} with {engine.name} …")
    # Docker allows plain HTTP to 127.0.0.0/8 by itself; Podman must be told (image/registry.py).
    digest = engine.push(image, target.ref, tls_verify=not is_loopback(target.name))
    pushed = PushedImage(
        image=image, ref=f"{target.name}@{digest}", tag=target.ref, engine=engine.name
    )
    return pushed, record_push(project_dir, pushed)
