"""Podman through its CLI.

Differences from Docker that matter here:

- GPUs go through CDI device names (`--device nvidia.com/gpu=all`, or one per index or UUID),
  which `nvidia-ctk cdi generate` writes to /etc/cdi. Podman has no "first n GPUs" selector,
  so a count becomes indexes 0..n-1.
- Builds use `--format docker`: the default OCI format drops HEALTHCHECK (and SHELL) with
  only a warning, and the workbench's health check lives in its Dockerfile.
- The OCI runtime can be chosen with TORCHRIG_PODMAN_RUNTIME (e.g. "runc"), passed as
  Podman's global `--runtime`. Unset, Podman uses its configured default. Set it where
  the default runtime cannot start containers, e.g. crun on hosts with hybrid cgroups.
- Its bridge networks reach each other: `--opt isolate=true` separates only networks that
  both have it, so a container on the default network still reached a workbench's Jupyter
  (Podman 4.3, CNI; tests/container/test_security_root.py). A workbench gets a network
  stack of its own instead, slirp4netns, with its ports published on 127.0.0.1 by
  slirp4netns itself: no bridge address exists for another container to reach.
- `--init` needs catatonit (apt-get install catatonit).
- `rm --force` first stops the container with its stop timeout (10 s by default) where
  Docker kills at once; torchrig passes `--time 0` to get Docker's behaviour.
- Health checks run from systemd timers. Without systemd (containers, CI sandboxes) nothing
  runs them and the status stays "starting"; there `health()` runs one check itself
  (`podman healthcheck run`), so a caller that polls `health()` drives the checks.
- Rootless, slirp4netns needs /dev/net/tun, which some hosts (sandboxes, hardened images)
  leave 0600 root: every run that publishes a port then fails with slirp4netns's
  "open("/dev/net/tun"): Permission denied"; torchrig names the fix instead (2026-12-07, a
  normal user on the CI machine).
- Rootful Podman 4 raises nofile and nproc to its own defaults (1048576, 4194304) as soon as
  any `--ulimit` is given; without CAP_SYS_RESOURCE runc then refuses to start the container
  ("error setting rlimit type 7"). Pass nofile and nproc explicitly, within the host's limits,
  whenever passing any ulimit.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchrig.command import command_line
from torchrig.engine.base import GpuSelector, health_from_inspect
from torchrig.engine.cli import DEFAULT_TIMEOUT_S, DIGEST, PUSH_TIMEOUT_S, CliEngine, push_failure
from torchrig.errors import ToolError

if TYPE_CHECKING:
    from torchrig.engine.cli import Runner

RUNTIME_ENV = "TORCHRIG_PODMAN_RUNTIME"
TUN = "/dev/net/tun"
SLIRP4NETNS = "slirp4netns:port_handler=slirp4netns"
OWN_MODES = ("slirp4netns", "pasta", "container:", "ns:", "bridge:")
CDI_GPU = "nvidia.com/gpu"
INSTALL_HINT = "install Podman (apt-get install podman, or your distribution's podman package)"


class PodmanEngine(CliEngine):
    name = "podman"
    bridge_networks = False
    install_hint = INSTALL_HINT

    def __init__(
        self,
        path: str | None = None,
        *,
        runner: Runner | None = None,
        runtime: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        systemd: bool | None = None,
    ) -> None:
        """runtime: the OCI runtime (runc, crun); None reads TORCHRIG_PODMAN_RUNTIME.
        systemd: whether systemd runs health check timers; None looks at /run/systemd/system."""
        super().__init__(path, runner=runner, timeout_s=timeout_s)
        self.runtime = runtime if runtime is not None else os.environ.get(RUNTIME_ENV) or None
        self.systemd = Path("/run/systemd/system").is_dir() if systemd is None else systemd

    def base_argv(self) -> list[str]:
        return [self.path, "--runtime", self.runtime] if self.runtime else [self.path]

    def _failed(
        self,
        what: str,
        proc: subprocess.CompletedProcess[str],
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> ToolError:
        said = proc.stderr or proc.stdout or ""
        if "slirp4netns" in said and TUN in said and "ermission denied" in said:
            # Only rootless Podman meets this; the stderr alone did not say what to do.
            return ToolError(
                f"{self.name}: {what} failed: rootless Podman publishes ports through "
                f"slirp4netns, which may not open {TUN} on this host",
                f"as root, give users the usual access: chmod 0666 {TUN}; or use Docker "
                "(--engine docker, as a member of the docker group)",
            )
        return super()._failed(what, proc, argv, env)

    def build_options(self) -> list[str]:
        return ["--format", "docker"]

    def pull_options(self, tls_verify: bool) -> list[str]:
        # Podman has no default for loopback registries: plain HTTP must be asked for.
        return [] if tls_verify else ["--tls-verify=false"]

    def push(self, image: str, target: str, *, tls_verify: bool = True) -> str:
        """Podman pushes an image to a named destination (no tag needed) and writes the
        manifest digest it pushed to --digestfile."""
        with tempfile.TemporaryDirectory(prefix="torchrig-push-") as tmp:
            digest_file = Path(tmp) / "digest"
            argv = [
                *self.base_argv(), "push", *self.pull_options(tls_verify),
                "--digestfile", str(digest_file), image, target,
            ]  # fmt: skip
            proc = self._call(argv, f"pushing {target}", timeout=PUSH_TIMEOUT_S, check=False)
            if proc.returncode != 0:
                raise push_failure(self.name, target, proc.stderr or proc.stdout or "", argv)
            digest = digest_file.read_text().strip() if digest_file.is_file() else ""
        if not DIGEST.fullmatch(digest):
            raise ToolError(
                f"podman: pushed {target} but wrote no digest ({digest!r})",
                f"reproduce with: {command_line(argv)}",
            )
        return digest

    def image_exists_argv(self, tag: str) -> list[str]:
        return [*self.base_argv(), "image", "exists", tag]

    def volume_exists_argv(self, name: str) -> list[str]:
        return [*self.base_argv(), "volume", "exists", name]

    def network_exists_argv(self, name: str) -> list[str]:
        return [*self.base_argv(), "network", "exists", name]

    def network_options(self) -> list[str]:
        # Podman's bridges route to each other unless isolated (CNI: the firewall plugin's
        # ingressPolicy "same-bridge"; netavark: its isolation chains).
        return ["--opt", "isolate=true"]

    def network_args(self, network: str | None) -> list[str]:
        # A workbench's own network, by name, is a network stack of its own (see the
        # module's notes); Podman's own modes ("none", "host", "slirp4netns:…") as given.
        if network is None:
            return []
        if network in ("none", "host", "private") or network.startswith(OWN_MODES):
            return ["--network", network]
        return ["--network", SLIRP4NETNS]

    def gpu_args(self, gpus: GpuSelector) -> list[str]:
        if gpus is None:
            return []
        if gpus == "all":
            ids: list[str] = ["all"]
        elif isinstance(gpus, int):
            ids = [str(i) for i in range(gpus)]
        else:
            ids = [str(g) for g in gpus]
        args: list[str] = []
        for gpu_id in ids:
            args += ["--device", f"{CDI_GPU}={gpu_id}"]
        return args

    def remove_options(self, force: bool) -> list[str]:
        return ["--force", "--time", "0"] if force else []

    def health_of(self, container: str, info: Mapping[str, Any]) -> str:
        status = health_from_inspect(info)
        running = bool((info.get("State") or {}).get("Running"))
        if status == "none" or self.systemd or not running:
            return status
        argv = [*self.base_argv(), "healthcheck", "run", container]
        self._call(argv, f"health check of {container}", check=False)
        after = self.inspect(container)
        return health_from_inspect(after) if after is not None else status
