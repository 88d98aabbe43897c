"""The one free-port probe (issue 13, item 7): `up`'s port choice, doctor and the NCCL check."""

from __future__ import annotations

import socket

from torchrig.freeport import free_port, port_is_free


def test_a_listener_takes_the_port_and_time_wait_does_not() -> None:
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its port holds TIME_WAIT
        client.close()
    assert port_is_free(port)


def test_free_port_names_a_port_that_can_be_taken() -> None:
    port = free_port()
    assert 0 < port < 65536 and port_is_free(port)
