"""The container engine interface: what torchrig asks of Docker or Podman, and nothing more.

`Engine` is the small set of operations the workbench needs (build, run, exec, inspect,
logs, stop, remove, volumes). `RunSpec` holds everything one `docker run` needs, as data,
so a run plan can be rendered, compared with a golden file and printed before it runs.

Implementations: `DockerEngine` and `PodmanEngine` (the CLIs, as subprocesses with argument
lists) and `RecordingEngine` (in memory, for fast tests). `choose_engine` picks one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from torchrig.errors import ToolError, UsageError

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

Progress = Callable[[str], None]
"""Receives one line of engine output at a time (build steps, debootstrap)."""

GpuSelector = Literal["all"] | int | tuple[int | str, ...] | None
"""None: no GPU. "all": every GPU. n: the first n GPUs. (0, 2) or ("GPU-uuid",): those."""

PortMap = dict[str, list[tuple[str, int]]]
"""Container port ("8888/tcp") → the host (ip, port) pairs it is published on."""

HEALTH_STATES = ("starting", "healthy", "unhealthy", "none")


class Port(NamedTuple):
    """Publish `container_port` on `host_ip:host_port`; host_port None picks a free one.

    host_ip is required: publishing on every interface must be asked for as "0.0.0.0".
    """

    host_ip: str
    host_port: int | None
    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"


@dataclass(frozen=True)
class Mount:
    """A bind mount (source: an absolute host path), a named volume, or a tmpfs."""

    source: str
    target: str
    kind: Literal["bind", "volume", "tmpfs"] = "bind"
    read_only: bool = False
    options: tuple[str, ...] = ()
    """Extra `--mount` options ("key=value"): "tmpfs-size=1g", Podman's "relabel=private"."""


@dataclass(frozen=True)
class HealthCheck:
    """Overrides the image's HEALTHCHECK. `command` runs under /bin/sh -c in the container."""

    command: str
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0


@dataclass(frozen=True)
class RunSpec:
    """Everything `docker run` / `podman run` needs for one container, as plain data."""

    image: str
    name: str | None = None
    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    """Replaces the image's ENTRYPOINT with this executable ("" clears it)."""
    detach: bool = True
    remove: bool = False
    """--rm: delete the container when it exits."""
    interactive: bool = False
    tty: bool = False
    hostname: str | None = None
    workdir: str | None = None
    user: str | None = None
    """ "uid:gid" or a user name inside the image."""
    group_add: tuple[str, ...] = ()
    userns: str | None = None
    """e.g. "keep-id" (rootless Podman) or "host"."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Plain settings. Secrets go in env_file: values here are visible in `ps` on the host."""
    env_file: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()
    mounts: tuple[Mount, ...] = ()
    gpus: GpuSelector = None
    shm_size: int | str | None = None
    """Bytes, or an engine size string such as "16g"."""
    ulimits: Mapping[str, int | tuple[int, int]] = field(default_factory=dict)
    """name → limit, or (soft, hard); -1 is unlimited. E.g. {"memlock": -1, "stack": 67108864}."""
    security_opt: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    pids_limit: int | None = None
    memory: int | str | None = None
    cpus: float | None = None
    stop_timeout: int | None = None
    """Seconds between SIGTERM and SIGKILL on `stop` (the engines' default is 10)."""
    init: bool = False
    """Run an init (tini, catatonit) as PID 1 that forwards signals and reaps zombies."""
    healthcheck: HealthCheck | None = None
    no_healthcheck: bool = False
    restart: str | None = None
    network: str | None = None


class RegistryUnreachable(ToolError):
    """No registry answered at that address (refused, no such host, timeout, TLS mismatch)."""


class RegistryRefused(ToolError):
    """The registry answered and refused: not logged in, or no right to that repository."""


class BuildFailed(ToolError):
    """A build step failed: the message names the step and ends with the last lines of output."""

    def __init__(
        self,
        message: str,
        fix: str | None = None,
        *,
        step: str | None,
        log_tail: Sequence[str],
        command: str,
    ) -> None:
        super().__init__(message, fix)
        self.step = step
        self.log_tail = list(log_tail)
        self.command = command


def check_gpus(gpus: GpuSelector) -> GpuSelector:
    """Normalise a selector: 0 and () mean no GPU; negative counts and blanks are refused."""
    if gpus is None or gpus == "all":
        return gpus
    if isinstance(gpus, bool) or not isinstance(gpus, int | tuple):
        raise UsageError(f"GPU selection {gpus!r} is not understood", 'use "all", a count or ids')
    if isinstance(gpus, int):
        if gpus < 0:
            raise UsageError(f"GPU count {gpus} is negative", 'use "all", a count or ids')
        return gpus or None
    if not gpus:
        return None
    for item in gpus:
        text = str(item)
        if not text or any(c in text for c in ", \t\n\"'"):
            raise UsageError(
                f"GPU id {item!r} is not an index or a UUID",
                "use indexes like 0,1 or UUIDs like GPU-…",
            )
        if isinstance(item, int) and item < 0:
            raise UsageError(f"GPU index {item} is negative", "GPU indexes start at 0")
    return gpus


class Engine(abc.ABC):
    """A container engine. Every method raises ToolError when the engine fails, HostError when
    the engine itself is missing; none of them exits the process."""

    name: str
    commands: list[str]
    """The commands run so far, ready to paste into a shell (for reproducing failures)."""
    bridge_networks: bool = True
    """A workbench's own network (RunSpec.network) is a bridge this engine makes (Docker);
    False: the engine gives the container a network stack of its own instead (Podman)."""

    @abc.abstractmethod
    def build(
        self,
        context_dir: Path,
        dockerfile: Path,
        tag: str,
        *,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        no_cache: bool = False,
        network: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Build `dockerfile` with `context_dir`, tag it, return the image id ("sha256:…").

        network: the RUN steps' network ("host" reaches servers on the host's 127.0.0.1).
        """

    @abc.abstractmethod
    def image_exists(self, tag: str) -> bool: ...

    @abc.abstractmethod
    def image_inspect(self, tag: str) -> dict[str, Any]:
        """The engine's inspect document; ToolError when there is no such image."""

    @abc.abstractmethod
    def image_remove(self, tag: str, *, force: bool = False, missing_ok: bool = True) -> None:
        """Untag (and delete, when no other tag holds it) an image."""

    def pull(self, ref: str, *, tls_verify: bool = True) -> None:
        """Pull an image from its registry (ToolError when none answers).

        tls_verify=False: the registry speaks plain HTTP (only ever asked for loopback
        registries; see image/registry.py)."""
        raise ToolError(f"{self.name}: pulling images is not supported")

    def push(self, image: str, target: str, *, tls_verify: bool = True) -> str:
        """Push the local `image` to a registry as `target` ("host[:port]/name:tag") with the
        engine's own login and settings; return the manifest digest the registry now holds
        ("sha256:…"), the one a cluster pulls by.

        RegistryUnreachable or RegistryRefused when the registry does not answer or refuses;
        tls_verify as for pull."""
        raise ToolError(f"{self.name}: pushing images is not supported")

    @abc.abstractmethod
    def import_rootfs(
        self,
        tar_path: Path,
        tag: str,
        *,
        labels: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Make an image from a root filesystem tarball (FROM scratch + ADD); return its id."""

    @abc.abstractmethod
    def run(self, spec: RunSpec) -> str:
        """Create and start a container; return its full id."""

    @abc.abstractmethod
    def exec(
        self,
        container: str,
        cmd: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        interactive: bool = False,
        input: str | None = None,
        timeout_s: float | None = None,
        detach: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` in a running container. The exit status is returned, not raised.

        interactive: attach this terminal (stdout/stderr are not captured).
        input: text fed to the command's stdin (keeps secrets off the command line).
        timeout_s: give up (ToolError) after this long; None waits as long as it runs.
        detach: start it and return at once (status 0: it started); the engine, not this
          process, holds it, so it outlives the caller, its terminal and its SSH session.
          Its output is discarded: a detached command writes its own log.
        """

    @abc.abstractmethod
    def inspect(self, container: str) -> dict[str, Any] | None:
        """The container's inspect document, or None when there is no such container."""

    @abc.abstractmethod
    def logs(
        self, container: str, *, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        """The container's output (stdout and stderr), line by line, without newlines."""

    @abc.abstractmethod
    def stop(self, container: str, *, timeout: int | None = None) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds (None: the container's stop timeout)."""

    @abc.abstractmethod
    def remove(self, container: str, *, force: bool = False, missing_ok: bool = True) -> None: ...

    @abc.abstractmethod
    def volume_create(self, name: str, *, labels: Mapping[str, str] | None = None) -> str: ...

    @abc.abstractmethod
    def volume_remove(self, name: str, *, force: bool = False, missing_ok: bool = True) -> None:
        """Delete a volume (force: even while a container uses it)."""

    @abc.abstractmethod
    def volume_exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def network_create(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        """A bridge network of its own, isolated from the engine's other bridges, from which
        published ports still reach its containers; returns its name."""

    @abc.abstractmethod
    def network_remove(self, name: str, *, missing_ok: bool = True) -> None: ...

    @abc.abstractmethod
    def network_exists(self, name: str) -> bool: ...

    def port(self, container: str) -> PortMap:
        """Published ports, from the inspect document; ToolError when there is no container."""
        info = self.inspect(container)
        if info is None:
            raise ToolError(f"{self.name}: no container {container!r}")
        return ports_from_inspect(info)

    def health(self, container: str) -> str:
        """One of "starting", "healthy", "unhealthy", or "none" when it has no health check."""
        info = self.inspect(container)
        if info is None:
            raise ToolError(f"{self.name}: no container {container!r}")
        return self.health_of(container, info)

    def health_of(self, container: str, info: Mapping[str, Any]) -> str:
        """health(), from an inspect document the caller already holds."""
        return health_from_inspect(info)


def ports_from_inspect(info: Mapping[str, Any]) -> PortMap:
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    found: PortMap = {}
    for key, bindings in sorted(ports.items()):
        found[key] = [
            (str(b.get("HostIp") or ""), int(b["HostPort"]))
            for b in bindings or ()
            if b.get("HostPort")
        ]
    return found


def health_from_inspect(info: Mapping[str, Any]) -> str:
    state = info.get("State") or {}
    # Docker says "Health"; Podman 4 says "Healthcheck" (and later both).
    health = state.get("Health") or state.get("Healthcheck") or {}
    status = str(health.get("Status") or "").lower()
    return status if status in HEALTH_STATES else "none"
