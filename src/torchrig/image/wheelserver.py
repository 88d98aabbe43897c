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

Downloads overlap the build: the server knows every locked file's name before any is on
disk (a `Shelf`), lists them all at once, and holds a request for a file still downloading
until it arrives, so the engine runs the base and apt layers while the host fetches torch.
It also hands out the host's own uv (path /uv), which the wheel layers fetch, run and delete
in one RUN: no layer keeps it (image/dockerfile.py).

Why not COPY the wheels in: with the classic Docker builder a COPY'd wheel stays in a layer
forever (gigabytes for CUDA), and the whole context is sent to the daemon on every build;
RUN --mount needs BuildKit.
"""

from __future__ import annotations

import contextlib
import functools
import html
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "torchrig-wheels"
WHEELS_URL = f"http://{HOST}/"
"""What the Dockerfile's --find-links names: a host that resolves nowhere but through us."""
PROXY_BUILD_ARG = "FTP_PROXY"
UV_PATH = "uv"
"""Where the server offers the host's uv binary (404 when it cannot run in the image)."""
WAIT_S = 3600.0
"""How long a request waits for a file still downloading (a slow mirror and torch's 900 MB)."""


class Shelf:
    """The files one build may ask for, by name, arriving in `folder` while it runs."""

    def __init__(
        self,
        folder: Path,
        names: Iterable[str] | None = None,
        tools: Mapping[str, Path] | None = None,
    ) -> None:
        self.folder = folder
        self.names = None if names is None else frozenset(names)
        """None: whatever the folder holds (all of it there before the build starts)."""
        self.tools = dict(tools or {})
        self._finished = threading.Event() if names is not None else None

    def finish(self) -> None:
        """No more files will arrive (the download ended, well or not)."""
        if self._finished is not None:
            self._finished.set()

    def listing(self) -> list[str]:
        if self.names is None:
            return sorted(p.name for p in self.folder.iterdir() if p.is_file())
        return sorted(self.names)

    def wait_for(self, name: str, timeout: float = WAIT_S) -> bool:
        """Whether `name` is (now) in the folder; waits while it may still arrive."""
        path = self.folder / name
        if self.names is None or name not in self.names or self._finished is None:
            return path.is_file()
        deadline = time.monotonic() + timeout
        while not path.is_file():
            if self._finished.is_set() or time.monotonic() > deadline:
                return path.is_file()
            self._finished.wait(0.2)
        return True


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

    def _shelved(self, head: bool) -> None:
        name = urllib.parse.unquote(self.path.split("?", 1)[0]).lstrip("/")
        if name == "":
            links = "".join(
                f'<a href="{html.escape(urllib.parse.quote(n))}">{html.escape(n)}</a>\n'
                for n in self.shelf.listing()
            )
            self._send(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode(), head)
            return
        if name in self.shelf.tools:
            self._send(self.shelf.tools[name].read_bytes(), head, "application/octet-stream")
            return
        if "/" in name or not self.shelf.wait_for(name):
            self.send_error(HTTPStatus.NOT_FOUND, f"{name} is not among this build's files")
            return
        if head:
            super().do_HEAD()
        else:
            super().do_GET()

    def _send(self, body: bytes, head: bool, kind: str = "text/html; charset=utf-8") -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    shelf: Shelf

    def do_GET(self) -> None:
        if self._route():
            self._shelved(head=False)

    def do_HEAD(self) -> None:
        if self._route():
            self._shelved(head=True)


@contextlib.contextmanager
def serve(source: Path | Shelf) -> Iterator[str]:
    """Yield the proxy URL (http://127.0.0.1:<any free port>) that serves a folder, or a
    shelf of files still arriving, as WHEELS_URL; stop serving on exit."""
    shelf = source if isinstance(source, Shelf) else Shelf(source)
    handler = functools.partial(
        type("_Handler", (_ProxyHandler,), {"shelf": shelf}), directory=str(shelf.folder)
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="torchrig-wheels", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
