"""The hub process (start, wait until it answers, stop) and a small client of its REST API.

The hub runs as a daemon of its own session: `python -I -m jupyterhub -f CONFIG` from the
state folder (-I: neither the folder it runs in nor PYTHON* variables reach sys.path).
JupyterHub writes its pid file; `lab down` and `lab status` read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchrig.command import start_daemon
from torchrig.errors import HostError
from torchrig.lab.state import LabState

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def pid_alive(pid_file: Path, name: str) -> int | None:
    """The pid in `pid_file` if that process is alive and its command line holds `name`."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError):
        return None
    return pid if name.encode() in cmdline else None


def hub_pid(state: LabState) -> int | None:
    return pid_alive(state.hub_pid, "jupyterhub")


def start_hub(state: LabState, python: str = sys.executable) -> int:
    argv = [python, "-I", "-m", "jupyterhub", "-f", str(state.config)]
    # The hub runs as root: no PYTHON*/JUPYTER* variable of the caller may steer it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER"))}
    with state.log.open("ab") as log:
        state.log.chmod(0o600)
        return start_daemon(argv, log, cwd=state.root, environ=env)


def wait_ready(url: str, pid: int, log: Path, timeout: float = READY_TIMEOUT_S) -> float:
    """Seconds until GET {url}/hub/api/ answers; HostError with the log's tail if the hub
    dies or never answers."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            raise HostError(f"the hub exited while starting: {_tail(log)}", f"see {log}")
        with contextlib.suppress(OSError, ValueError):
            status, _ = request(f"{url}/hub/api/", timeout=3)
            if status == 200:
                return time.monotonic() - start
        time.sleep(0.3)
    raise HostError(
        f"the hub did not answer on {url} within {timeout:.0f} s: {_tail(log)}", f"see {log}"
    )


def _zombie(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == pid


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    errors = [line for line in text if " E " in line or "Error" in line]
    return " | ".join((errors or text)[-lines:])[-600:]


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_hub(state: LabState) -> bool:
    """Stop the hub and its proxy; True if a hub was running."""
    pid = hub_pid(state)
    if pid is not None:
        stop_pid(pid)
    # The hub stops the proxy it started; one left by a killed hub goes too.
    proxy = pid_alive(state.proxy_pid, "configurable-http-proxy")
    if proxy is not None:
        stop_pid(proxy, 10)
    return pid is not None


def request(
    url: str,
    *,
    token: str | None = None,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    timeout: float = 30,
    cookie: str | None = None,
) -> tuple[int, str]:
    """(status, body text); never follows redirects (a 302 to /login is an answer)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    handlers: list[urllib.request.BaseHandler] = [NoRedirect(), urllib.request.ProxyHandler({})]
    if url.startswith("https://127.0.0.1") or url.startswith("https://localhost"):
        # Our own hub on loopback, maybe with a self-signed certificate.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    if cookie:
        headers["Cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with opener.open(req, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


@dataclass(frozen=True)
class HubApi:
    """The hub's REST API as torchrig's service (lab/render.py TORCHRIG_SCOPES)."""

    url: str
    token: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, text = request(
            f"{self.url}/hub/api{path}", token=self.token, method=method, body=body
        )
        if status >= 400:
            raise HostError(f"the hub answered {status} to {method} {path}: {text[:200]}")
        return json.loads(text) if text.strip() else None

    def users(self) -> list[dict[str, Any]]:
        found = self.call("GET", "/users")
        return list(found.get("items", found) if isinstance(found, dict) else found)

    def new_token(self, user: str, note: str) -> str:
        made = self.call("POST", f"/users/{user}/tokens", {"note": note, "expires_in": 86400})
        return str(made["token"])
