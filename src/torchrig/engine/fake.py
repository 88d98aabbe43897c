"""An engine that runs nothing: it records every call and answers from a small in-memory
state, so CLI verbs can be tested in milliseconds and their engine calls asserted.

    engine = RecordingEngine()
    engine.add_image("torchrig/demo:1")
    spec = RunSpec(image="torchrig/demo:1", name="wb", ports=(Port("127.0.0.1", None, 8888),))
    cid = engine.run(spec)
    assert engine.port("wb") == {"8888/tcp": [("127.0.0.1", 49153)]}
    assert [c.method for c in engine.calls] == ["run", "inspect"]

Scripting: `fail[method] = error` makes that method raise; `exec_handler` answers `exec`;
`logs_of[name]` holds a container's output; `set_health(name, status)` sets its health.
"""

from __future__ import annotations

import hashlib
import itertools
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torchrig.engine.base import (
    BuildFailed,
    Engine,
    PortMap,
    Progress,
    RunSpec,
    check_gpus,
)
from torchrig.errors import ToolError, UsageError

if TYPE_CHECKING:
    from pathlib import Path

ExecHandler = Callable[[str, Sequence[str]], "subprocess.CompletedProcess[str]"]

FIRST_HOST_PORT = 49153  # where Docker's ephemeral range starts


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class FakeContainer:
    id: str
    name: str
    spec: RunSpec
    running: bool = True
    exit_code: int = 0
    health: str = "none"
    ports: PortMap = field(default_factory=dict)


BUILTIN_NETWORKS = ("bridge", "host", "none", "podman")


class RecordingEngine(Engine):
    name = "fake"

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.calls: list[Call] = []
        self.images: dict[str, dict[str, Any]] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.volumes: dict[str, dict[str, str]] = {}
        self.networks: dict[str, dict[str, str]] = {}
        self.registry: dict[str, str] = {}
        """What `pull` finds: reference → manifest digest ("sha256:…")."""
        self.logs_of: dict[str, list[str]] = {}
        self.fail: dict[str, Exception] = {}
        self.exec_handler: ExecHandler | None = None
        self.build_output: list[str] = ["STEP 1/1: FROM scratch"]
        self._ids = itertools.count(1)
        self._host_ports = itertools.count(FIRST_HOST_PORT)

    # --- scripting ------------------------------------------------------------------------

    def add_image(self, tag: str, labels: Mapping[str, str] | None = None) -> str:
        image_id = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
        self.images[tag] = {"Id": image_id, "RepoTags": [tag], "Config": {"Labels": labels}}
        return image_id

    def set_health(self, container: str, status: str) -> None:
        self._container(container).health = status

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(Call(method, args, kwargs))
        shown = " ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        self.commands.append(f"fake {method} {shown}".rstrip())
        if method in self.fail:
            raise self.fail[method]

    def _find(self, ref: str) -> FakeContainer | None:
        if ref in self.containers:
            return self.containers[ref]
        for container in self.containers.values():
            if container.name == ref or (len(ref) >= 12 and container.id.startswith(ref)):
                return container
        return None

    def _container(self, ref: str) -> FakeContainer:
        found = self._find(ref)
        if found is None:
            raise ToolError(f"fake: no container {ref!r}")
        return found

    # --- images ---------------------------------------------------------------------------

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
        self._record(
            "build",
            context_dir,
            dockerfile,
            tag,
            build_args=dict(build_args or {}),
            labels=dict(labels or {}),
            no_cache=no_cache,
            network=network,
        )
        for line in self.build_output:
            if progress is not None:
                progress(line)
        return self.add_image(tag, labels)

    def image_exists(self, tag: str) -> bool:
        self._record("image_exists", tag)
        return tag in self.images

    def image_inspect(self, tag: str) -> dict[str, Any]:
        self._record("image_inspect", tag)
        if tag not in self.images:
            raise ToolError(f"fake: no image {tag!r}")
        return self.images[tag]

    def image_remove(self, tag: str, *, force: bool = False, missing_ok: bool = True) -> None:
        self._record("image_remove", tag, force=force, missing_ok=missing_ok)
        if tag not in self.images:
            if missing_ok:
                return
            raise ToolError(f"fake: no image {tag!r}")
        in_use = any(c.spec.image == tag for c in self.containers.values())
        if in_use and not force:
            raise ToolError(f"fake: image {tag} is used by a container")
        del self.images[tag]

    def pull(self, ref: str, *, tls_verify: bool = True) -> None:
        """Scripted through `registry`: ref → digest; anything else is unreachable."""
        self._record("pull", ref, tls_verify=tls_verify)
        digest = self.registry.get(ref)
        if digest is None:
            raise ToolError(f"fake: pulling {ref} failed: no such host")
        name = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
        self.images[ref] = {"Id": digest, "RepoTags": [ref], "RepoDigests": [f"{name}@{digest}"]}

    def push(self, image: str, target: str, *, tls_verify: bool = True) -> str:
        """Stores `image` in `registry` under `target`; its digest is the image id's hash
        with the target mixed in (a registry's manifest digest differs from the image id)."""
        self._record("push", image, target, tls_verify=tls_verify)
        if image not in self.images:
            raise ToolError(f"fake: no image {image!r}")
        digest = (
            "sha256:" + hashlib.sha256(f"{self.images[image]['Id']}\n{target}".encode()).hexdigest()
        )
        self.registry[target] = digest
        return digest

    def import_rootfs(
        self,
        tar_path: Path,
        tag: str,
        *,
        labels: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        self._record("import_rootfs", tar_path, tag, labels=dict(labels or {}))
        if not tar_path.is_file():
            raise UsageError(f"root filesystem tarball {tar_path} does not exist")
        return self.add_image(tag, labels)

    # --- containers -----------------------------------------------------------------------

    def run(self, spec: RunSpec) -> str:
        self._record("run", spec)
        check_gpus(spec.gpus)
        if spec.image not in self.images:
            raise ToolError(f"fake: no image {spec.image!r}")
        if spec.name and self._find(spec.name):
            raise ToolError(f'fake: the container name "{spec.name}" is already in use')
        if spec.network and spec.network not in (*BUILTIN_NETWORKS, *self.networks):
            raise ToolError(f"fake: network {spec.network} not found")
        cid = hashlib.sha256(f"container-{next(self._ids)}".encode()).hexdigest()
        name = spec.name or f"fake_{cid[:8]}"
        ports: PortMap = {}
        for port in spec.ports:
            host_port = port.host_port or next(self._host_ports)
            key = f"{port.container_port}/{port.protocol}"
            ports.setdefault(key, []).append((port.host_ip, host_port))
        health = "starting" if spec.healthcheck and not spec.no_healthcheck else "none"
        self.containers[cid] = FakeContainer(cid, name, spec, health=health, ports=ports)
        return cid

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
        self._record(
            "exec",
            container,
            list(cmd),
            user=user,
            env=dict(env or {}),
            workdir=workdir,
            interactive=interactive,
            input=input,
            timeout_s=timeout_s,
            detach=detach,
        )
        found = self._container(container)
        if not found.running:
            return subprocess.CompletedProcess(list(cmd), 1, "", f"{container} is not running")
        if self.exec_handler is not None:
            return self.exec_handler(container, cmd)
        return subprocess.CompletedProcess(list(cmd), 0, "", "")

    def inspect(self, container: str) -> dict[str, Any] | None:
        self._record("inspect", container)
        found = self._find(container)
        if found is None:
            return None
        state: dict[str, Any] = {
            "Status": "running" if found.running else "exited",
            "Running": found.running,
            "ExitCode": found.exit_code,
        }
        if found.health != "none":
            state["Health"] = {"Status": found.health}
        return {
            "Id": found.id,
            "Name": "/" + found.name,
            "State": state,
            "Config": {
                "Image": found.spec.image,
                "Labels": dict(found.spec.labels),
                "Env": [f"{k}={v}" for k, v in found.spec.env.items()],
                **(
                    {"Healthcheck": {"Test": ["CMD-SHELL", found.spec.healthcheck.command]}}
                    if found.spec.healthcheck and not found.spec.no_healthcheck
                    else {}
                ),
            },
            "Mounts": [
                {
                    "Type": m.kind,
                    "Source": m.source,
                    "Destination": m.target,
                    **({"Name": m.source} if m.kind == "volume" else {}),
                }
                for m in found.spec.mounts
            ],
            "NetworkSettings": {
                "Ports": {
                    key: [{"HostIp": ip, "HostPort": str(port)} for ip, port in bindings]
                    for key, bindings in found.ports.items()
                }
            },
        }

    def logs(
        self, container: str, *, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        self._record("logs", container, follow=follow, tail=tail)
        found = self._container(container)
        lines = self.logs_of.get(found.name, [])
        return iter(lines[-tail:] if tail else list(lines))

    def stop(self, container: str, *, timeout: int | None = None) -> None:
        self._record("stop", container, timeout=timeout)
        self._container(container).running = False

    def remove(self, container: str, *, force: bool = False, missing_ok: bool = True) -> None:
        self._record("remove", container, force=force, missing_ok=missing_ok)
        found = self._find(container)
        if found is None:
            if missing_ok:
                return
            raise ToolError(f"fake: no container {container!r}")
        if found.running and not force:
            raise ToolError(f"fake: container {container} is running; stop it or force")
        del self.containers[found.id]

    # --- volumes --------------------------------------------------------------------------

    def volume_create(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        self._record("volume_create", name, labels=dict(labels or {}))
        self.volumes.setdefault(name, dict(labels or {}))
        return name

    def volume_remove(self, name: str, *, force: bool = False, missing_ok: bool = True) -> None:
        self._record("volume_remove", name, force=force, missing_ok=missing_ok)
        if name not in self.volumes:
            if missing_ok:
                return
            raise ToolError(f"fake: no volume {name!r}")
        in_use = any(
            m.kind == "volume" and m.source == name
            for c in self.containers.values()
            for m in c.spec.mounts
        )
        if in_use and not force:
            raise ToolError(f"fake: volume {name} is in use")
        del self.volumes[name]

    def volume_exists(self, name: str) -> bool:
        self._record("volume_exists", name)
        return name in self.volumes

    # --- networks -------------------------------------------------------------------------

    def network_create(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        self._record("network_create", name, labels=dict(labels or {}))
        self.networks.setdefault(name, dict(labels or {}))
        return name

    def network_remove(self, name: str, *, missing_ok: bool = True) -> None:
        self._record("network_remove", name, missing_ok=missing_ok)
        if name not in self.networks:
            if missing_ok:
                return
            raise ToolError(f"fake: no network {name!r}")
        if any(c.spec.network == name for c in self.containers.values()):
            raise ToolError(f"fake: network {name} is in use")
        del self.networks[name]

    def network_exists(self, name: str) -> bool:
        self._record("network_exists", name)
        return name in self.networks


def failing_build(step: str, tail: Sequence[str] = ()) -> BuildFailed:
    """An error for `fail["build"]` that looks like a real failed step."""
    return BuildFailed(
        f"fake build failed at step {step}",
        "fix that step",
        step=step,
        log_tail=list(tail),
        command="fake build",
    )
