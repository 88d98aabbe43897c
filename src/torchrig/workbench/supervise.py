"""The supervisor: runs the workbench's services as the user, and keeps them running.

    python -m torchrig.workbench.supervise      (exec'd by the entrypoint, never as root)

- Each service runs in its own session (process group), so the SIGTERM that tini forwards
  reaches the supervisor alone, and the supervisor stops each service with its children
  (Jupyter kernels, sshd sessions' parents) in order.
- Output of every service goes to stdout, line by line, prefixed with its name; the Jupyter
  token is masked should anything ever print it.
- A service that exits is restarted after 1 s, 2 s, 4 s … at most 30 s (the delay grows
  with its crashes in the last 5 minutes). At the 10th crash within 5 minutes the
  supervisor stops the others and exits 70, so the container stops and says why.
- SIGTERM or SIGINT: SIGTERM to every service, SIGKILL to what is left after 10 s, exit 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from torchrig import contract
from torchrig.workbench import hub_mode
from torchrig.workbench.env import EX_SOFTWARE, EX_USAGE, EnvError, Settings, parse
from torchrig.workbench.home import Layout
from torchrig.workbench.jupyter_guard import OriginError, origin_pattern, parse_origins

VENV = contract.VENV
WORKSPACE = contract.WORKSPACE
MASK = "[token hidden]"
NAME_WIDTH = len("tensorboard")


def prefixed(line: str, name: str = "torchrig") -> str:
    return f"{name:<{NAME_WIDTH}} | {line}"


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    """The whole environment of the service; None inherits the supervisor's."""
    cwd: str | None = None


@dataclass(frozen=True)
class Policy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    window_s: float = 300.0
    max_crashes: int = 10
    stop_timeout_s: float = 10.0
    poll_s: float = 0.1

    def delay(self, crashes: int) -> float:
        """Seconds before the restart that follows the `crashes`-th crash in the window."""
        return float(min(self.max_delay_s, self.first_delay_s * 2 ** max(crashes - 1, 0)))


@dataclass
class _Running:
    service: Service
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    started: int = 0


class Supervisor:
    def __init__(
        self,
        services: Sequence[Service],
        policy: Policy | None = None,
        *,
        out: IO[str] | None = None,
        mask: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or Policy()
        self._out = out or sys.stdout
        self._mask = [m for m in mask if m]
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._code = 0
        self.running = [_Running(s) for s in services]

    # --- output ---------------------------------------------------------------------------

    def say(self, line: str, name: str = "torchrig") -> None:
        for secret in self._mask:
            line = line.replace(secret, MASK)
        with self._lock:
            try:
                self._out.write(prefixed(line, name) + "\n")
                self._out.flush()
            except (OSError, ValueError):
                pass  # stdout gone: keep supervising

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(raw.decode("utf-8", "replace").rstrip("\r\n"), name)
        stream.close()

    # --- control --------------------------------------------------------------------------

    def request_stop(self, reason: str = "asked to stop") -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def handle_signals(self) -> None:
        def on_signal(signum: int, _frame: object) -> None:
            self.request_stop(f"received {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _start(self, slot: _Running) -> None:
        svc = slot.service
        slot.restart_at = None
        slot.started += 1
        try:
            slot.process = subprocess.Popen(
                svc.argv,
                env=dict(svc.env) if svc.env is not None else None,
                cwd=svc.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            slot.process = None
            self.say(f"cannot start {svc.argv[0]}: {exc.strerror or exc}")
            self._crashed(slot, f"could not start ({exc.strerror or exc})")
            return
        assert slot.process.stdout is not None
        slot.reader = threading.Thread(
            target=self._pump, args=(svc.name, slot.process.stdout), daemon=True
        )
        slot.reader.start()
        self.say(f"started {svc.name} (pid {slot.process.pid})")

    def _crashed(self, slot: _Running, how: str) -> None:
        """Count a crash and schedule the restart, or give up: stop everything, exit 70."""
        now = self._clock()
        slot.crashes.append(now)
        while slot.crashes and slot.crashes[0] < now - self.policy.window_s:
            slot.crashes.popleft()
        count = len(slot.crashes)
        window = f"{self.policy.window_s / 60:g} min"
        if count >= self.policy.max_crashes:
            self.say(
                f"{slot.service.name} {how}; {count} crashes in {window}: giving up "
                f"(exit {EX_SOFTWARE}). Its last lines above say why."
            )
            self._code = EX_SOFTWARE
            self.request_stop(f"{slot.service.name} keeps crashing")
            return
        delay = self.policy.delay(count)
        slot.restart_at = now + delay
        self.say(
            f"{slot.service.name} {how}; restarting in {delay:g} s "
            f"(crash {count} of {self.policy.max_crashes} allowed in {window})"
        )

    def run(self) -> int:
        """Supervise until asked to stop (exit 0) or a service keeps crashing (exit 70)."""
        for slot in self.running:
            if not self._stop.is_set():
                self._start(slot)
        while not self._stop.is_set():
            for slot in self.running:
                if self._stop.is_set():
                    break
                proc = slot.process
                if proc is not None:
                    rc = proc.poll()
                    if rc is None:
                        continue
                    slot.process = None
                    if slot.reader is not None:
                        slot.reader.join(timeout=1)
                    how = (
                        f"was killed by {signal.Signals(-rc).name}"
                        if rc < 0 and -rc in signal.valid_signals()
                        else f"exited with code {rc}"
                    )
                    self._crashed(slot, how)
                elif slot.restart_at is not None and self._clock() >= slot.restart_at:
                    self._start(slot)
            self._stop.wait(self.policy.poll_s)
        self._stop_all()
        return self._code

    def _stop_all(self) -> None:
        live = [s for s in self.running if s.process is not None and s.process.poll() is None]
        self.say(f"{self._stop_reason}: stopping {', '.join(s.service.name for s in live) or '-'}")
        for slot in live:
            assert slot.process is not None
            _signal_group(slot.process, signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_timeout_s
        for slot in live:
            assert slot.process is not None
            try:
                slot.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(
                    f"{slot.service.name} still running after "
                    f"{self.policy.stop_timeout_s:g} s: SIGKILL"
                )
                _signal_group(slot.process, signal.SIGKILL)
                slot.process.wait()
            else:
                # Its group may still hold children (kernels); they go with it.
                _signal_group(slot.process, signal.SIGKILL)
        for slot in live:
            if slot.reader is not None:
                slot.reader.join(timeout=1)
        self.say(
            "all services stopped; graceful stop complete"
            if self._code == 0
            else f"all services stopped; exiting {self._code}"
        )


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


# --- the workbench's services ---------------------------------------------------------------


def user_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    env = dict(environ)
    home = str(settings.home)
    env.update(HOME=home, USER=settings.user, LOGNAME=settings.user, SHELL="/bin/bash")
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if f"{VENV}/bin" not in path.split(":"):
        env["PATH"] = f"{VENV}/bin:{path}"
    return env


def services_for(settings: Settings, environ: Mapping[str, str], venv: str = VENV) -> list[Service]:
    layout = Layout(settings.home)
    base = user_environment(settings, environ)
    found: list[Service] = []
    for name in settings.services:
        if name == "jupyter" and hub_mode.spawned_by_hub(environ):
            # A lab's server: the hub authenticates (workbench/hub_mode.py), not a token file.
            argv = hub_mode.singleuser_argv(venv, str(settings.home))
            found.append(Service(name, argv, dict(base), str(settings.home)))
        elif name == "jupyter":
            env = dict(base)
            # The token comes from the file only: a JUPYTER_TOKEN from the env file would
            # win over it and make the URL `up` prints wrong.
            env.pop("JUPYTER_TOKEN", None)
            env["JUPYTER_TOKEN_FILE"] = str(layout.token)
            argv = jupyter_argv(venv, origin_pattern(parse_origins(environ)))
            found.append(Service(name, argv, env, WORKSPACE))
        elif name == "ssh":
            found.append(Service(name, sshd_argv(layout.sshd_config), base, str(settings.home)))
        elif name == "tensorboard":
            found.append(Service(name, tensorboard_argv(venv), base, WORKSPACE))
        elif name == "metrics":
            found.append(Service(name, metrics_argv(f"{venv}/bin/python"), base, WORKSPACE))
    return found


IDENTITY_PROVIDER = "torchrig.workbench.jupyter_identity.GuardedIdentityProvider"


def jupyter_argv(venv: str = VENV, origins: str = "") -> tuple[str, ...]:
    """`origins`: the allow_origin_pat (jupyter_guard.origin_pattern of the published URL)."""
    pinned = (f"--ServerApp.allow_origin_pat={origins}",) if origins else ()
    return (
        f"{venv}/bin/jupyter",
        "lab",
        "--ServerApp.ip=0.0.0.0",
        f"--ServerApp.port={contract.JUPYTER_PORT}",
        # Fail rather than quietly move to 8889: the port is published and health-checked.
        "--ServerApp.port_retries=0",
        # On (the default) when ip is set; off turns on the Host check (DNS rebinding).
        "--ServerApp.allow_remote_access=False",
        f"--ServerApp.root_dir={WORKSPACE}",
        "--ServerApp.open_browser=False",
        # No calls to PyPI from a workbench (no network at run time beyond what you do).
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        # Origin checked for token-authenticated requests too; wrong tokens throttled.
        f"--ServerApp.identity_provider_class={IDENTITY_PROVIDER}",
        # Only the published URL may call across origins; a pattern (never empty) also stops
        # jupyter_server from echoing any Origin back to token-authenticated requests.
        *pinned,
    )


def sshd_argv(config: Path) -> tuple[str, ...]:
    return ("/usr/sbin/sshd", "-D", "-e", "-f", str(config))


def tensorboard_argv(venv: str = VENV) -> tuple[str, ...]:
    return (
        f"{venv}/bin/tensorboard",
        "--logdir",
        f"{WORKSPACE}/runs",
        "--host",
        "0.0.0.0",
        "--port",
        str(contract.TENSORBOARD_PORT),
    )


def metrics_argv(python: str, port: int = 9400, host: str = "0.0.0.0") -> tuple[str, ...]:
    """GPU and training metrics for Prometheus (torchrig.monitor.exporter). It listens on
    every address inside the container, like TensorBoard, so that the port `up` publishes
    on the host's 127.0.0.1 reaches it; nothing else publishes it."""
    return (python, "-m", "torchrig.monitor.exporter", "--host", host, "--port", str(port),
            "--workspace", WORKSPACE)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    if os.getuid() == 0 or os.geteuid() == 0:
        print("torchrig: the supervisor never runs as root", file=sys.stderr)
        return EX_USAGE
    try:
        settings = parse(os.environ)
        services = services_for(settings, os.environ)
    except (EnvError, OriginError) as exc:
        print(f"torchrig: {exc}", file=sys.stderr)
        return EX_USAGE
    layout = Layout(settings.home)
    mask = []
    if "jupyter" in settings.services:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            mask.append(layout.token.read_text(encoding="ascii").strip())
    supervisor = Supervisor(services, mask=mask)
    supervisor.handle_signals()
    names = ", ".join(settings.services) or "no services"
    supervisor.say(f"supervising {names} as {settings.user} (uid {os.getuid()})")
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
