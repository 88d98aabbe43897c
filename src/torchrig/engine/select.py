"""Which engine to use: the one asked for, else Docker when it answers, else Podman.

The choice rests on probed facts (`HostFacts.engines`), never on sniffing DOCKER_HOST or
socket paths: the CLIs themselves know where their daemons are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchrig.engine.docker import DockerEngine
from torchrig.engine.podman import PodmanEngine
from torchrig.errors import HostError, UsageError

if TYPE_CHECKING:
    from torchrig.engine.base import Engine
    from torchrig.host.facts import Engine as EngineFacts
    from torchrig.host.facts import HostFacts

ENGINE_NAMES = ("docker", "podman")
NO_ENGINE = "no container engine"
INSTALL_ANY = "install Docker (apt-get install docker.io) or Podman (apt-get install podman)"

_FIX_UNREACHABLE = {
    "docker": "start the daemon (systemctl start docker), or let this user use it "
    "(sudo usermod -aG docker $USER, then log in again)",
    "podman": "run `podman info` to see why it fails",
}
_FIX_MISSING = {
    "docker": "install Docker (apt-get install docker.io)",
    "podman": "install Podman (apt-get install podman)",
}


def choose_engine(name: str | None, host: HostFacts) -> Engine:
    """The engine named (docker, podman), or the first usable one of Docker and Podman."""
    if name is not None:
        if name not in ENGINE_NAMES:
            raise UsageError(
                f"unknown container engine {name!r}", f"choose one of: {', '.join(ENGINE_NAMES)}"
            )
        facts = host.engine(name)
        if facts is None or not facts.present:
            raise HostError(f"{name} is not installed", _FIX_MISSING[name])
        if not facts.reachable:
            raise HostError(
                f"{name} is installed but not usable: {facts.error or 'it did not answer'}",
                _FIX_UNREACHABLE[name],
            )
        return make_engine(facts)
    for candidate in ENGINE_NAMES:
        facts = host.engine(candidate)
        if facts is not None and facts.reachable:
            return make_engine(facts)
    reasons = [
        f"{e.name}: {e.error or ('not reachable' if e.present else 'not installed')}"
        for e in host.engines
    ]
    why = f" ({'; '.join(reasons)})" if reasons else ""
    raise HostError(f"{NO_ENGINE}{why}", INSTALL_ANY)


def make_engine(facts: EngineFacts) -> Engine:
    path = facts.path or None
    if facts.name == "docker":
        return DockerEngine(path)
    return PodmanEngine(path)
