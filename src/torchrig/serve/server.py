"""Running the app under uvicorn: address, port, limits, graceful shutdown.

- 127.0.0.1 unless told otherwise; --no-auth only on a loopback address (anyone on the
  network could use the model otherwise).
- The port is tried before anything loads, so "in use" is one line (exit 4), not a log.
- At most `max_connections` connections are served at once (uvicorn's limit_concurrency:
  one more gets 503 at once) and the open-files limit is raised to the hard limit, so a
  burst of 1,000 connections is answered instead of failing accept() with EMFILE.
- SIGTERM / Ctrl-C: uvicorn stops accepting, lets requests in flight (streams included)
  finish for up to `graceful_s` seconds, then exits 0.
"""

from __future__ import annotations

import resource
import socket

from torchrig.errors import HostError, UsageError

DEFAULT_HOST = "127.0.0.1"


def check_port(host: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a port number", "use 1-65535, e.g. 8000")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise HostError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                "choose another --port (or stop what uses it), or a --host of this machine",
            ) from None


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            return soft
    return soft


def make_server(
    app: object,
    host: str,
    port: int,
    max_connections: int = 2048,
    graceful_s: int = 30,
) -> object:
    import uvicorn

    raise_open_files_limit()
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        limit_concurrency=max_connections,
        backlog=max(2048, max_connections),
        timeout_graceful_shutdown=graceful_s,
        timeout_keep_alive=5,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    return uvicorn.Server(config)
