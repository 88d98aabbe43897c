"""The health check against a stand-in Jupyter on 127.0.0.1 and a fake /proc/net."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from torchrig.workbench import health

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  4242        0 1
   1: 0100007F:8AE4 0100007F:22B8 01 00000000:00000000 00:00000000 00000000  4242        0 2
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:08AE 00000000000000000000000000000000:0000 0A 0
   1: 00000000000000000000000000000000:1771 00000000000000000000000000000000:0000 06 0
"""


def test_listening_ports_come_from_proc_net(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text(TCP6)
    # 0x22B8 = 8888 and 0x08AE = 2222 listen; 0x8AE4 is a client, 0x1771 (6001) TIME_WAIT.
    assert health.listening_ports(tmp_path) == {8888, 2222}
    assert health.listening_ports(tmp_path / "missing") == set()


class _Api(BaseHTTPRequestHandler):
    status = 200
    body = json.dumps({"version": "2.21.1"}).encode()

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/api" else 404)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def port_of(server: HTTPServer) -> int:
    return int(server.server_address[1])


def test_jupyter_answering_is_healthy(api: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # An env file's proxy must not take the health check somewhere else.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert health.jupyter_serves(port_of(api)) is None


def test_jupyter_errors_are_unhealthy(api: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Api, "status", 500)
    assert health.jupyter_serves(port_of(api)) == "jupyter answered 500 on /api"
    monkeypatch.setattr(_Api, "status", 200)
    monkeypatch.setattr(_Api, "body", b"<html>not jupyter</html>")
    assert "does not answer" in (health.jupyter_serves(port_of(api)) or "")
    monkeypatch.setattr(_Api, "body", b"{}")
    assert health.jupyter_serves(port_of(api)) == "jupyter's /api did not report a version"


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert "does not answer" in (health.jupyter_serves(free) or "")


def test_a_hung_jupyter_is_unhealthy_within_the_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts the connection, never answers
        problem = health.jupyter_serves(listener.getsockname()[1], timeout=0.3)
    assert problem is not None and "does not answer" in problem


def test_problems_checks_only_enabled_services(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(TCP)
    assert health.problems(("ssh",), tmp_path) == ["ssh: nothing listens on port 2222"]
    (tmp_path / "tcp6").write_text(TCP6)
    assert health.problems(("ssh",), tmp_path) == []
    assert health.problems(("tensorboard",), tmp_path) == [
        "tensorboard: nothing listens on port 6006"
    ]
    assert health.problems((), tmp_path) == []
