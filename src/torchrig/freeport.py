"""The one free-port probe: whether a 127.0.0.1 port can be taken, or any free one; and
whether a host is this machine's loopback.

`up` moves a taken service port to the next free one, doctor reports taken ports, and the
NCCL check needs a rendezvous port; they all ask here, the same way the engine's proxy binds.
"""

from __future__ import annotations

import ipaddress
import socket

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as probe:
        # As the engine's proxy binds: connections just closed (TIME_WAIT, e.g. a browser
        # tab of the last session) do not block it, so they must not move the port either.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now (the kernel's pick); a caller binds it soon after."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 in brackets or not) is this machine's
    loopback: only there is plain HTTP or a server without a token no risk."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
