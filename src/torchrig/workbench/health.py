"""The image's HEALTHCHECK: exit 0 when every enabled service serves, else 1.

    python -m torchrig.workbench.health

- jupyter: GET http://127.0.0.1:8888/api answers 200 with its version (that route needs no
  token). Proxies in the environment (an env file's HTTP_PROXY) are ignored.
- ssh, tensorboard: a socket listens on 2222 / 6006. Read from /proc/net/tcp{,6} rather than
  by connecting: a probe connection every 5 s would fill the log with sshd's
  "Connection from 127.0.0.1" lines and, on OpenSSH >= 9.8, earn 127.0.0.1 penalties.

Docker runs health checks as the image's user, root here: the first thing this does is drop
to the workbench user, so no root process lingers beside tini.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from torchrig.workbench import disk, hub_mode
from torchrig.workbench.env import PORTS, EnvError, parse_id, parse_services
from torchrig.workbench.privileges import StillPrivileged, drop

TIMEOUT_S = 2.0
WORKSPACE = "/workspace"
LISTEN = "0A"


def drop_to_user(environ: Mapping[str, str]) -> None:
    if os.geteuid() != 0:
        return
    drop(parse_id("TORCHRIG_UID", environ), parse_id("TORCHRIG_GID", environ))


def jupyter_serves(
    port: int = PORTS["jupyter"], timeout: float = TIMEOUT_S, prefix: str = "/"
) -> str | None:
    """None when healthy, else what is wrong."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{prefix}api", timeout=timeout) as response:
            body = json.loads(response.read(4096).decode("utf-8"))
    except urllib.error.HTTPError as exc:
        return f"jupyter answered {exc.code} on /api"
    except (OSError, ValueError) as exc:
        return f"jupyter does not answer on {port}: {exc}"
    if not isinstance(body, dict) or "version" not in body:
        return "jupyter's /api did not report a version"
    return None


def listening_ports(proc_net: Path = Path("/proc/net")) -> set[int]:
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def problems(services: tuple[str, ...], proc_net: Path = Path("/proc/net")) -> list[str]:
    found = []
    if "jupyter" in services:
        # A lab's server answers under /user/NAME/ (workbench/hub_mode.py).
        problem = jupyter_serves(prefix=hub_mode.service_prefix(os.environ))
        if problem:
            found.append(problem)
    listening = listening_ports(proc_net)
    for name in ("ssh", "tensorboard", "metrics"):
        if name in services and PORTS[name] not in listening:
            found.append(f"{name}: nothing listens on port {PORTS[name]}")
    return found


def disk_notes(environ: Mapping[str, str]) -> list[str]:
    """One "warning: low disk: …" line per low filesystem (workspace, home). Low disk never
    makes the workbench unhealthy: Jupyter still serves and a restart frees nothing; the
    line reaches `torchrig status` through the engine's health log."""
    user = environ.get("TORCHRIG_USER", "")
    paths = [WORKSPACE, *([f"/home/{user}"] if user else [])]
    return [
        f"{disk.PREFIX}{found.describe()}: saves may fail (notebooks, checkpoints); free some space"
        for found in disk.low_disk(paths)
    ]


def main() -> int:
    try:
        drop_to_user(os.environ)
        services = parse_services(os.environ)
    except (EnvError, OSError, StillPrivileged) as exc:
        print(f"unhealthy: {exc}")
        return 1
    found = problems(services)
    if found:
        print("unhealthy: " + "; ".join(found))
        return 1
    print("healthy: " + (", ".join(services) or "no services"))
    for note in disk_notes(os.environ):
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
