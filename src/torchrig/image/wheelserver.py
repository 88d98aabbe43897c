"""Serve a folder of wheels to an image build on 127.0.0.1, for the build's lifetime.

Builds run with host networking and install with `pip --no-index --find-links` from this
server. Why not COPY the wheels in: with the classic Docker builder a COPY'd wheel stays in a
layer forever (gigabytes for CUDA); RUN --mount needs BuildKit. The port is fixed so the RUN
lines, and so the layer cache, stay the same from build to build.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFERRED_PORT = 41257


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def serve(folder: Path, port: int = PREFERRED_PORT) -> Iterator[str]:
    """Yield the find-links URL of `folder`; stop serving on exit."""
    chosen = port if _free(port) else 0  # 0: any free port (the layer cache then misses)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", chosen), handler)
    thread = threading.Thread(target=server.serve_forever, name="torchrig-wheels", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
