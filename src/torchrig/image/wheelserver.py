"""Serve a folder of wheels to an image build, for the build's lifetime, as the proxy of
one made-up host.

Builds run with host networking and install with
`http_proxy="$FTP_PROXY" pip install --no-index --find-links http://torchrig-wheels/ …`:
the Dockerfile names only the host `torchrig-wheels`, never an address, and this server, on
any free port of 127.0.0.1, answers as the HTTP proxy for that host. Its address reaches the
build as the build argument FTP_PROXY, one of the predefined proxy arguments that the engines
keep out of the layer cache, so a taken port changes neither the Dockerfile, nor the tag, nor
the cache (docs/workbench.md, "The build-time wheel server"). FTP_PROXY because nothing in a
build speaks FTP; a build-wide HTTP_PROXY would also redirect apt.

Why not COPY the wheels in: with the classic Docker builder a COPY'd wheel stays in a layer
forever (gigabytes for CUDA), and the whole context is sent to the daemon on every build;
RUN --mount needs BuildKit.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "torchrig-wheels"
WHEELS_URL = f"http://{HOST}/"
"""What the Dockerfile's --find-links names: a host that resolves nowhere but through us."""
PROXY_BUILD_ARG = "FTP_PROXY"


class _ProxyHandler(SimpleHTTPRequestHandler):
    """Serves `directory` to requests for http://torchrig-wheels/…, refuses every other host
    (it is no open proxy for the build), and logs nothing."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _local_path(self) -> str | None:
        # Through a proxy, pip asks in absolute form: "GET http://torchrig-wheels/x.whl".
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or url.hostname != HOST or url.port not in (None, 80):
            return None
        return urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))

    def _route(self) -> bool:
        local = self._local_path()
        if local is None:
            self.send_error(HTTPStatus.FORBIDDEN, f"this proxy only serves {WHEELS_URL}")
            return False
        self.path = local
        return True

    def do_GET(self) -> None:
        if self._route():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._route():
            super().do_HEAD()


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Yield the proxy URL (http://127.0.0.1:<any free port>) that serves `folder` as
    WHEELS_URL; stop serving on exit."""
    handler = functools.partial(_ProxyHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="torchrig-wheels", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
