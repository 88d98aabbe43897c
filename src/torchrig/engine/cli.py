"""What Docker and Podman share: a CLI driven through argument lists, never a shell.

Each operation is two steps: a pure `*_argv` method that renders the exact command (golden-
tested for both engines), and the call through a `Runner`, which tests can replace. Every
command run is appended to `engine.commands`, ready to paste into a shell, so a failure can
be reproduced by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchrig.command import command_line, run_command, stream_command
from torchrig.engine.base import (
    BuildFailed,
    Engine,
    GpuSelector,
    HealthCheck,
    Mount,
    Port,
    Progress,
    RegistryRefused,
    RegistryUnreachable,
    RunSpec,
    check_gpus,
)
from torchrig.errors import HostError, ToolError, UsageError

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator, Mapping, Sequence

DEFAULT_TIMEOUT_S = 120.0  # inspect, rm, volume: seconds when healthy, minutes when I/O-bound
STOP_GRACE_S = 60.0  # on top of the container's stop timeout, for the engine's own work
LOG_TAIL_LINES = 20
PULL_TIMEOUT_S = 900.0  # a base image is tens of MB; slow mirrors take minutes
# A CUDA workbench image is 5–20 GB; an upload to a remote registry can take an hour or more.
PUSH_TIMEOUT_S = 4 * 3600.0
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What Docker 20–28 and Podman 4–5 print when no registry answers at the address, and when
# one answers but will not take the push.
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|no route to host|network is unreachable"
    r"|server gave HTTP response to HTTPS client|TLS handshake timeout|x509:"
    r"|connection reset",
    re.IGNORECASE,
)
_REFUSED = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|denied"
    r"|insufficient_scope|403 Forbidden",
    re.IGNORECASE,
)
FOREVER = float("inf")  # no time limit: attached runs and interactive shells

# Messages both engines print for an object that does not exist (Docker 20–28, Podman 4–5).
_MISSING = re.compile(
    r"no such (container|object|image|volume|network)|(image|volume) not known"
    r"|network not found|network \S+ not found|unable to find network",
    re.IGNORECASE,
)
# Docker: 'The container name "/wb" is already in use'; Podman: 'the container name "wb" is …'.
_NAME_IN_USE = re.compile(r'name "[^"]*" is already in use', re.IGNORECASE)

# The line that starts each build step: classic Docker, Podman/Buildah, BuildKit --progress=plain.
_STEP_CLASSIC = re.compile(r"^Step (\d+/\d+) : (.*)$")
_STEP_PODMAN = re.compile(r"^STEP (\d+(?:/\d+)?): (.*)$")
_STEP_BUILDKIT = re.compile(r"^#(\d+) \[(?:[^\]]* )?(\d+/\d+)\] (.*)$")
_ERROR_BUILDKIT = re.compile(r"^#(\d+) ERROR: (.*)$")
_ERROR_LINE = re.compile(r"returned a non-zero code|^error|\berror:|ERROR:", re.IGNORECASE)

ROOTFS_DOCKERFILE = """\
# A base image from a root filesystem tarball (torchrig.image.base): no registry needed.
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/bash"]
"""


class Runner:
    """Runs engine commands. Tests substitute one that records argv and answers from a script."""

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        input: str | None = None,
        capture: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return run_command(argv, timeout, env=env, input=input, capture=capture)

    def lines(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> Generator[str, None, int]:
        """Yield stdout and stderr merged, line by line as they come; return the exit status.

        Closing the generator early (a `logs --follow` reader that stops) ends the process.
        """
        return stream_command(argv, env=env)


def error_detail(text: str) -> str:
    """The line of an engine's stderr that says what went wrong."""
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("See '", "Run '"))
    ]
    if not lines:
        return "no error message"
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines)[-1]


def push_failure(engine: str, target: str, text: str, argv: Sequence[str]) -> ToolError:
    """One line for a failed push: refused (log in), unreachable (address, TLS), or other."""
    host = target.split("/", 1)[0]
    detail = error_detail(text)
    if _REFUSED.search(text):
        return RegistryRefused(
            f"registry {host} refused the push of {target}: {detail}",
            f"log in with `{engine} login {host}` (torchrig pushes with {engine}'s own login) "
            "and check that your account may push to that repository",
        )
    if _UNREACHABLE.search(text):
        if "HTTP response to HTTPS client" in text:
            fix = (
                f"it speaks plain HTTP: give it TLS, or list {host} as an insecure registry "
                "(Docker: insecure-registries in daemon.json; Podman: registries.conf)"
            )
        elif "x509:" in text:
            fix = (
                f"{engine} does not trust its TLS certificate: add the registry's CA as "
                f"/etc/{'docker' if engine == 'docker' else 'containers'}/certs.d/{host}/ca.crt"
            )
        else:
            fix = f"check the address and that the registry runs (https://{host}/v2/ answers)"
        return RegistryUnreachable(f"registry {host} is unreachable: {detail}", fix)
    return ToolError(
        f"{engine}: pushing {target} failed: {detail}", f"reproduce with: {command_line(argv)}"
    )


def duration(seconds: float) -> str:
    return f"{seconds:g}s"


class BuildLog:
    """Follows build output to know which step is running, and which one failed."""

    def __init__(self) -> None:
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.step: str | None = None
        self.error: str | None = None
        self._vertices: dict[str, str] = {}
        self._failed_vertex: str | None = None

    def feed(self, line: str) -> None:
        self.tail.append(line)
        if match := _STEP_CLASSIC.match(line) or _STEP_PODMAN.match(line):
            self.step = f"{match.group(1)} {match.group(2).strip()}"
        elif match := _STEP_BUILDKIT.match(line):
            # BuildKit runs steps in parallel: the failed one is the vertex that reports ERROR.
            self._vertices[match.group(1)] = f"{match.group(2)} {match.group(3).strip()}"
            if self._failed_vertex is None:
                self.step = self._vertices[match.group(1)]
        elif match := _ERROR_BUILDKIT.match(line):
            self._failed_vertex = self._failed_vertex or match.group(1)
            self.step = self._vertices.get(match.group(1), self.step)
            self.error = match.group(2).strip()
        elif _ERROR_LINE.search(line):
            self.error = line.strip()

    def failure(
        self, engine: str, tag: str, dockerfile: Path, command: str, rc: int
    ) -> BuildFailed:
        where = f"at step {self.step}" if self.step else "before any step ran"
        why = self.error or f"exit status {rc}"
        tail = "\n".join(f"    {line}" for line in self.tail)
        return BuildFailed(
            f"{engine} build of {tag} failed {where}: {why}\n  last lines of the build:\n{tail}",
            f"fix that step in {dockerfile}; reproduce with: {command}",
            step=self.step,
            log_tail=list(self.tail),
            command=command,
        )


class CliEngine(Engine):
    """An engine driven through its command line; subclasses supply what differs."""

    name = "engine"
    install_hint = ""

    def __init__(
        self,
        path: str | None = None,
        *,
        runner: Runner | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.path = path or self.name
        self.runner = runner or Runner()
        self.timeout_s = timeout_s
        self.commands: list[str] = []

    # --- what differs between engines -----------------------------------------------------

    def base_argv(self) -> list[str]:
        """The CLI and its global options."""
        return [self.path]

    def gpu_args(self, gpus: GpuSelector) -> list[str]:
        raise NotImplementedError

    def build_env(self) -> dict[str, str]:
        return {}

    def build_argv(
        self,
        context_dir: Path,
        dockerfile: Path,
        tag: str,
        *,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        no_cache: bool = False,
        network: str | None = None,
        iidfile: Path | None = None,
    ) -> list[str]:
        argv = [*self.base_argv(), "build", "--file", str(dockerfile), "--tag", tag]
        argv += self.build_options()
        if iidfile is not None:
            argv += ["--iidfile", str(iidfile)]
        if no_cache:
            argv.append("--no-cache")
        argv += _opt("--network", network)
        for key, value in (build_args or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        argv.append(str(context_dir))
        return argv

    def build_options(self) -> list[str]:
        return []

    def remove_options(self, force: bool) -> list[str]:
        return ["--force"] if force else []

    def image_exists_argv(self, tag: str) -> list[str]:
        return [*self.base_argv(), "image", "inspect", "--format", "{{.Id}}", tag]

    def volume_exists_argv(self, name: str) -> list[str]:
        return [*self.base_argv(), "volume", "inspect", "--format", "{{.Name}}", name]

    def network_exists_argv(self, name: str) -> list[str]:
        return [*self.base_argv(), "network", "inspect", "--format", "{{.Name}}", name]

    def network_args(self, network: str | None) -> list[str]:
        """`run`'s network: the workbench's own bridge, by name."""
        return _opt("--network", network)

    def network_options(self) -> list[str]:
        """What makes a bridge network isolated from the engine's other networks."""
        return []

    # --- rendering ------------------------------------------------------------------------

    def run_argv(self, spec: RunSpec, *, cidfile: Path | None = None) -> list[str]:
        """The exact `run` command for `spec`, in a fixed option order."""
        argv = [*self.base_argv(), "run"]
        if spec.detach:
            argv.append("--detach")
        if cidfile is not None:
            argv += ["--cidfile", str(cidfile)]
        if spec.remove:
            argv.append("--rm")
        if spec.interactive:
            argv.append("--interactive")
        if spec.tty:
            argv.append("--tty")
        argv += _opt("--name", spec.name)
        argv += _opt("--hostname", spec.hostname)
        if spec.init:
            argv.append("--init")
        argv += _opt("--user", spec.user)
        for group in spec.group_add:
            argv += ["--group-add", group]
        argv += _opt("--userns", spec.userns)
        argv += _opt("--workdir", spec.workdir)
        if spec.env_file is not None:
            argv += ["--env-file", str(spec.env_file)]
        for key, value in spec.env.items():
            argv += ["--env", f"{_env_name(key)}={value}"]
        for key, value in spec.labels.items():
            argv += ["--label", f"{key}={value}"]
        for port in spec.ports:
            argv += ["--publish", publish_value(port)]
        for mount in spec.mounts:
            argv += ["--mount", mount_value(mount)]
        argv += self.gpu_args(check_gpus(spec.gpus))
        argv += _opt("--shm-size", spec.shm_size)
        for name, limit in spec.ulimits.items():
            value = f"{limit[0]}:{limit[1]}" if isinstance(limit, tuple) else str(limit)
            argv += ["--ulimit", f"{name}={value}"]
        for opt in spec.security_opt:
            argv += ["--security-opt", opt]
        for cap in spec.cap_drop:
            argv += ["--cap-drop", cap]
        for cap in spec.cap_add:
            argv += ["--cap-add", cap]
        argv += _opt("--pids-limit", spec.pids_limit)
        argv += _opt("--memory", spec.memory)
        argv += _opt("--cpus", spec.cpus)
        argv += _opt("--stop-timeout", spec.stop_timeout)
        argv += _opt("--restart", spec.restart)
        argv += self.network_args(spec.network)
        if spec.no_healthcheck:
            argv.append("--no-healthcheck")
        elif spec.healthcheck is not None:
            argv += healthcheck_args(spec.healthcheck)
        argv += _opt("--entrypoint", spec.entrypoint)
        argv.append(spec.image)
        argv += spec.command
        return argv

    def exec_argv(
        self,
        container: str,
        cmd: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        interactive: bool = False,
        tty: bool = False,
        detach: bool = False,
    ) -> list[str]:
        if not cmd:
            raise UsageError("exec needs a command to run in the container")
        if detach and (interactive or tty):
            raise UsageError("a detached exec cannot also attach a terminal or stdin")
        argv = [*self.base_argv(), "exec"]
        if detach:
            argv.append("--detach")
        if interactive:
            argv.append("--interactive")
        if tty:
            argv.append("--tty")
        argv += _opt("--user", user)
        argv += _opt("--workdir", workdir)
        for key, value in (env or {}).items():
            argv += ["--env", f"{_env_name(key)}={value}"]
        return [*argv, container, *cmd]

    # --- calling --------------------------------------------------------------------------

    def _call(
        self,
        argv: list[str],
        what: str,
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        capture: bool = True,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        self.commands.append(command_line(argv, env))
        limit = self.timeout_s if timeout is None else timeout
        try:
            proc = self.runner.run(
                argv,
                env=env,
                timeout=None if limit == FOREVER else limit,
                input=input,
                capture=capture,
            )
        except FileNotFoundError:
            raise self._not_installed() from None
        except subprocess.TimeoutExpired:
            raise ToolError(
                f"{self.name}: {what} did not finish within {limit:g} s",
                f"check that the {self.name} engine is responsive; the command was: "
                f"{command_line(argv, env)}",
            ) from None
        if check and proc.returncode != 0:
            raise self._failed(what, proc, argv, env)
        return proc

    def _failed(
        self,
        what: str,
        proc: subprocess.CompletedProcess[str],
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> ToolError:
        return ToolError(
            f"{self.name}: {what} failed: {error_detail(proc.stderr or proc.stdout or '')}",
            f"reproduce with: {command_line(argv, env)}",
        )

    def _not_installed(self) -> HostError:
        return HostError(f"the {self.name} CLI ({self.path}) is not installed", self.install_hint)

    def _json(self, argv: list[str], what: str) -> Any:
        proc = self._call(argv, what)
        try:
            return json.loads(proc.stdout or "null")
        except json.JSONDecodeError:
            raise ToolError(
                f"{self.name}: {what} did not print JSON",
                f"reproduce with: {command_line(argv)}",
            ) from None

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
        if not context_dir.is_dir():
            raise UsageError(f"build context {context_dir} is not a directory")
        if not dockerfile.is_file():
            raise UsageError(f"Dockerfile {dockerfile} does not exist")
        with tempfile.TemporaryDirectory(prefix="torchrig-build-") as tmp:
            iidfile = Path(tmp) / "image-id"
            argv = self.build_argv(
                context_dir,
                dockerfile,
                tag,
                build_args=build_args,
                labels=labels,
                no_cache=no_cache,
                network=network,
                iidfile=iidfile,
            )
            env = self.build_env()
            command = command_line(argv, env)
            self.commands.append(command)
            log = BuildLog()
            try:
                lines = self.runner.lines(argv, env=env)
                while True:
                    try:
                        line = next(lines)
                    except StopIteration as done:
                        rc = int(done.value)
                        break
                    log.feed(line)
                    if progress is not None:
                        progress(line)
            except FileNotFoundError:
                raise self._not_installed() from None
            if rc != 0:
                raise log.failure(self.name, tag, dockerfile, command, rc)
            image_id = iidfile.read_text("utf-8").strip() if iidfile.is_file() else ""
        return image_id or str(self.image_inspect(tag).get("Id", ""))

    def image_exists(self, tag: str) -> bool:
        proc = self._call(self.image_exists_argv(tag), f"looking up image {tag}", check=False)
        if proc.returncode == 0:
            return True
        if proc.returncode == 1 and (not proc.stderr.strip() or _MISSING.search(proc.stderr)):
            return False
        raise self._failed(f"looking up image {tag}", proc, self.image_exists_argv(tag))

    def image_inspect(self, tag: str) -> dict[str, Any]:
        found = self._json([*self.base_argv(), "image", "inspect", tag], f"inspecting image {tag}")
        if not isinstance(found, list) or not found or not isinstance(found[0], dict):
            raise ToolError(f"{self.name}: no image {tag!r}")
        return found[0]

    def image_remove(self, tag: str, *, force: bool = False, missing_ok: bool = True) -> None:
        argv = [*self.base_argv(), "image", "rm", *(["--force"] if force else []), tag]
        proc = self._call(argv, f"removing image {tag}", check=False)
        if proc.returncode != 0 and not (missing_ok and _MISSING.search(proc.stderr or "")):
            raise self._failed(f"removing image {tag}", proc, argv)

    def pull_options(self, tls_verify: bool) -> list[str]:
        """Docker decides plain HTTP per registry in its daemon (127.0.0.0/8 by default)."""
        return []

    def pull(self, ref: str, *, tls_verify: bool = True) -> None:
        argv = [*self.base_argv(), "pull", "--quiet", *self.pull_options(tls_verify), ref]
        self._call(argv, f"pulling {ref}", timeout=PULL_TIMEOUT_S)

    def push(self, image: str, target: str, *, tls_verify: bool = True) -> str:
        """Docker pushes a name: tag the image as `target`, push, and read the digest the
        daemon recorded for that repository (RepoDigests)."""
        self._call([*self.base_argv(), "tag", image, target], f"tagging {image} as {target}")
        argv = [*self.base_argv(), "push", *self.pull_options(tls_verify), target]
        proc = self._call(argv, f"pushing {target}", timeout=PUSH_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise push_failure(self.name, target, proc.stderr or proc.stdout or "", argv)
        repository = target.rsplit(":", 1)[0] if ":" in target.rsplit("/", 1)[-1] else target
        for entry in self.image_inspect(target).get("RepoDigests") or []:
            name, _, digest = str(entry).partition("@")
            if name == repository and DIGEST.fullmatch(digest):
                return digest
        raise ToolError(
            f"{self.name}: pushed {target} but the engine reports no digest for it",
            f"reproduce with: {command_line(argv)}",
        )

    def import_rootfs(
        self,
        tar_path: Path,
        tag: str,
        *,
        labels: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> str:
        if not tar_path.is_file():
            raise UsageError(f"root filesystem tarball {tar_path} does not exist")
        # The build context is a folder beside the tarball, so the tarball can be hard-linked
        # into it rather than copied; where that folder is not ours to write (the shared
        # cache, for a user outside group torchrig), a temporary folder and a copy.
        beside = tar_path.parent if os.access(tar_path.parent, os.W_OK | os.X_OK) else None
        with tempfile.TemporaryDirectory(dir=beside, prefix=".import-") as tmp:
            context = Path(tmp)
            try:
                os.link(tar_path, context / "rootfs.tar")
            except OSError:
                shutil.copyfile(tar_path, context / "rootfs.tar")
            dockerfile = context / "Dockerfile"
            dockerfile.write_text(ROOTFS_DOCKERFILE, "utf-8")
            return self.build(context, dockerfile, tag, labels=labels, progress=progress)

    # --- containers -----------------------------------------------------------------------

    def run(self, spec: RunSpec) -> str:
        if spec.detach:
            argv = self.run_argv(spec)
            proc = self._call(argv, f"starting {spec.name or spec.image}", check=False)
            if proc.returncode != 0:
                self._clean_up_failed_run(spec, proc)
                raise self._failed(f"starting {spec.name or spec.image}", proc, argv)
            return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        with tempfile.TemporaryDirectory(prefix="torchrig-run-") as tmp:
            cidfile = Path(tmp) / "cid"
            argv = self.run_argv(spec, cidfile=cidfile)
            proc = self._call(argv, "running", timeout=FOREVER, capture=False, check=False)
            cid = cidfile.read_text("utf-8").strip() if cidfile.is_file() else ""
            if proc.returncode != 0:
                raise ToolError(
                    f"{self.name}: the container {spec.name or cid[:12]} exited with status "
                    f"{proc.returncode}",
                    f"reproduce with: {command_line(argv)}",
                )
            return cid

    def _clean_up_failed_run(self, spec: RunSpec, proc: subprocess.CompletedProcess[str]) -> None:
        """A run that fails to start (port taken, bad mount) leaves a created container that
        would block the next run with the same name; remove it, unless the failure was that
        the name belongs to another container."""
        if spec.name and not _NAME_IN_USE.search(proc.stderr or ""):
            with contextlib.suppress(ToolError):
                self.remove(spec.name, force=True)

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
        if detach:
            if interactive or input is not None:
                raise UsageError("a detached exec takes no terminal and no input")
            argv = self.exec_argv(container, cmd, user=user, env=env, workdir=workdir, detach=True)
            # Returns once the engine has started it: the engine's usual time limit applies.
            return self._call(argv, f"exec --detach in {container}", check=False)
        tty = interactive and sys.stdin.isatty() and sys.stdout.isatty()
        argv = self.exec_argv(
            container,
            cmd,
            user=user,
            env=env,
            workdir=workdir,
            interactive=interactive or input is not None,
            tty=tty,
        )
        return self._call(
            argv,
            f"exec in {container}",
            timeout=FOREVER if timeout_s is None else timeout_s,
            input=input,
            capture=not interactive,
            check=False,
        )

    def inspect(self, container: str) -> dict[str, Any] | None:
        argv = [*self.base_argv(), "container", "inspect", container]
        proc = self._call(argv, f"inspecting {container}", check=False)
        if proc.returncode != 0:
            if _MISSING.search(proc.stderr or ""):
                return None
            raise self._failed(f"inspecting {container}", proc, argv)
        try:
            found = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            raise ToolError(f"{self.name}: inspecting {container} did not print JSON") from None
        return found[0] if isinstance(found, list) and found else None

    def logs(
        self, container: str, *, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        argv = [*self.base_argv(), "logs"]
        if follow:
            argv.append("--follow")
        if tail is not None:
            argv += ["--tail", str(tail)]
        argv.append(container)
        self.commands.append(command_line(argv))
        return self._logs(argv, container)

    def _logs(self, argv: list[str], container: str) -> Iterator[str]:
        seen: deque[str] = deque(maxlen=3)
        try:
            lines = self.runner.lines(argv)
            while True:
                try:
                    line = next(lines)
                except StopIteration as done:
                    rc = int(done.value)
                    break
                seen.append(line)
                yield line
        except FileNotFoundError:
            raise self._not_installed() from None
        if rc != 0:
            raise ToolError(
                f"{self.name}: reading the logs of {container} failed: "
                f"{error_detail(chr(10).join(seen))}",
                f"reproduce with: {command_line(argv)}",
            )

    def stop(self, container: str, *, timeout: int | None = None) -> None:
        argv = [*self.base_argv(), "stop"]
        if timeout is not None:
            argv += ["-t", str(timeout)]
        argv.append(container)
        grace = STOP_GRACE_S + (timeout if timeout is not None else 600)
        self._call(argv, f"stopping {container}", timeout=grace)

    def remove(self, container: str, *, force: bool = False, missing_ok: bool = True) -> None:
        argv = [*self.base_argv(), "rm", "--volumes", *self.remove_options(force), container]
        proc = self._call(argv, f"removing {container}", check=False)
        if proc.returncode != 0 and not (missing_ok and _MISSING.search(proc.stderr or "")):
            raise self._failed(f"removing {container}", proc, argv)

    # --- volumes --------------------------------------------------------------------------

    def volume_create(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        argv = [*self.base_argv(), "volume", "create"]
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        argv.append(name)
        proc = self._call(argv, f"creating volume {name}")
        return proc.stdout.strip() or name

    def volume_remove(self, name: str, *, force: bool = False, missing_ok: bool = True) -> None:
        argv = [*self.base_argv(), "volume", "rm"]
        if force:
            argv.append("--force")
        argv.append(name)
        proc = self._call(argv, f"removing volume {name}", check=False)
        if proc.returncode != 0 and not (missing_ok and _MISSING.search(proc.stderr or "")):
            raise self._failed(f"removing volume {name}", proc, argv)

    def volume_exists(self, name: str) -> bool:
        argv = self.volume_exists_argv(name)
        proc = self._call(argv, f"looking up volume {name}", check=False)
        if proc.returncode == 0:
            return True
        if proc.returncode == 1 and (not proc.stderr.strip() or _MISSING.search(proc.stderr)):
            return False
        raise self._failed(f"looking up volume {name}", proc, argv)

    # --- networks -------------------------------------------------------------------------

    def network_create(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        argv = [*self.base_argv(), "network", "create", "--driver", "bridge"]
        argv += self.network_options()
        for key, value in (labels or {}).items():
            argv += ["--label", f"{key}={value}"]
        argv.append(name)
        self._call(argv, f"creating network {name}")
        return name

    def network_remove(self, name: str, *, missing_ok: bool = True) -> None:
        argv = [*self.base_argv(), "network", "rm", name]
        proc = self._call(argv, f"removing network {name}", check=False)
        if proc.returncode != 0 and not (missing_ok and _MISSING.search(proc.stderr or "")):
            raise self._failed(f"removing network {name}", proc, argv)

    def network_exists(self, name: str) -> bool:
        argv = self.network_exists_argv(name)
        proc = self._call(argv, f"looking up network {name}", check=False)
        if proc.returncode == 0:
            return True
        if proc.returncode == 1 and (not proc.stderr.strip() or _MISSING.search(proc.stderr)):
            return False
        raise self._failed(f"looking up network {name}", proc, argv)


def _opt(flag: str, value: object) -> list[str]:
    return [] if value is None else [flag, str(value)]


def _env_name(key: str) -> str:
    if not key or "=" in key or any(c.isspace() for c in key):
        raise UsageError(f"{key!r} is not an environment variable name")
    return key


def publish_value(port: Port) -> str:
    """`--publish` value: "127.0.0.1:8888:8888/tcp"; an empty host port lets the engine pick."""
    if not port.host_ip:
        raise UsageError(
            f"port {port.container_port} has no host address",
            'publish on "127.0.0.1"; publishing on every interface must be asked for as "0.0.0.0"',
        )
    for number in (port.host_port, port.container_port):
        if number is not None and not 0 < number < 65536:
            raise UsageError(f"port {number} is outside 1–65535")
    ip = f"[{port.host_ip}]" if ":" in port.host_ip else port.host_ip
    host_port = "" if port.host_port is None else str(port.host_port)
    return f"{ip}:{host_port}:{port.container_port}/{port.protocol}"


def mount_value(mount: Mount) -> str:
    """`--mount` value. Commas and quotes are refused: the engines split options on commas."""
    if mount.kind == "bind" and not mount.source.startswith("/"):
        raise UsageError(f"bind mount source {mount.source!r} is not an absolute path")
    if not mount.target.startswith("/"):
        raise UsageError(f"mount target {mount.target!r} is not an absolute path")
    parts = [f"type={mount.kind}"]
    if mount.kind != "tmpfs":
        parts.append(f"source={mount.source}")
    parts.append(f"target={mount.target}")
    if mount.read_only:
        parts.append("ro=true")  # Podman 4 refuses "readonly=true" on volumes
    parts += mount.options
    for part in parts:
        if any(c in part for c in ',"\n'):
            raise UsageError(
                f"mount {mount.source or mount.target!r} contains a comma, quote or newline",
                "use a path without commas or quotes",
            )
    return ",".join(parts)


def healthcheck_args(check: HealthCheck) -> list[str]:
    return [
        "--health-cmd",
        check.command,
        "--health-interval",
        duration(check.interval_s),
        "--health-timeout",
        duration(check.timeout_s),
        "--health-retries",
        str(check.retries),
        "--health-start-period",
        duration(check.start_period_s),
    ]
