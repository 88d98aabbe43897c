"""The one free-port probe (issue 13, item 7): `up`'s port choice, doctor and the NCCL check."""

from __future__ import annotations

import socket

import pytest

from torchrig.freeport import free_port, is_loopback, port_is_free


def test_a_port_whose_last_connection_is_closing_is_still_free() -> None:
    # A connection closed by this side leaves TIME_WAIT on the listener's port; the next
    # `up` must keep the same port (bookmarks, ssh config) as the engine could bind it.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)  # a listener: taken
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its port holds TIME_WAIT
        client.close()
    assert port_is_free(port)


def test_free_port_names_a_port_that_can_be_taken() -> None:
    port = free_port()
    assert 0 < port < 65536 and port_is_free(port)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
     ("[::1]", True), ("0.0.0.0", False), ("10.0.0.7", False), ("registry.example", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
