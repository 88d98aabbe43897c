"""Install a container engine on a fresh Debian or Ubuntu machine, asking first.

Docker from the distribution (docker.io) is what torchrig installs: it is signed by the
distribution, needs no third-party repository, and is enough for a workbench. GPU support
still needs NVIDIA's container toolkit, which torchrig names but does not install.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from torchrig.command import run_command, start_daemon
from torchrig.engine.base import Progress
from torchrig.errors import HostError

SOCKET = Path("/var/run/docker.sock")


def offer_engine_install(*, assume_yes: bool, progress: Progress) -> bool:
    """Install Docker if the person agrees (or passed --install-engine). True when installed."""
    if not assume_yes:
        if not sys.stdin.isatty():
            return False  # choose_engine then says how to install one
        answer = input(
            "No container engine found. Install Docker (apt-get install docker.io)? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            return False
    install_docker(progress)
    return True


def install_docker(progress: Progress) -> None:
    if shutil.which("apt-get") is None:
        raise HostError(
            "torchrig installs engines only on Debian or Ubuntu (apt-get)",
            "install Docker or Podman with your distribution's packages",
        )
    if os.geteuid() != 0:
        raise HostError(
            "installing Docker needs root", "rerun with sudo, or install docker.io yourself"
        )
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "docker.io"]):
        progress(" ".join(argv))
        done = run_command(argv, env={"DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise HostError(
                f"{' '.join(argv)} failed: {tail}", "fix apt, then run torchrig up again"
            )
    start_docker(progress)


def start_docker(progress: Progress, timeout: float = 60.0) -> None:
    if SOCKET.exists():
        return
    if Path("/run/systemd/system").is_dir():
        run_command(["systemctl", "enable", "--now", "docker"], capture=False)
    else:  # containers and minimal machines: no systemd
        progress("starting dockerd in the background")
        with Path("/var/log/dockerd.log").open("ab") as log:
            start_daemon(["dockerd"], log)
    deadline = time.monotonic() + timeout
    while not SOCKET.exists():
        if time.monotonic() > deadline:
            raise HostError("dockerd did not start", "see /var/log/dockerd.log")
        time.sleep(0.5)
