"""TCP_NODELAY on every socket pynetdicom opens or accepts.

pynetdicom 3.0 only sets SO_REUSEADDR. With Nagle's algorithm on, the second small write
of a DIMSE message (the data set PDU after the command PDU) waits for the peer's delayed
ACK, about 40 ms on Linux: a C-STORE, C-GET or C-MOVE stream is then capped near 20
instances/s even on loopback (DESIGN.md §4). pynetdicom has no socket-options hook, so
the two methods that create client sockets and accept server sockets are wrapped.

The HTTP side needs nothing: urllib3 (under requests and dicomweb-client) sets
TCP_NODELAY on every connection it opens (``HTTPConnection.default_socket_options``),
which :func:`http_sets_nodelay` checks so that a future urllib3 change shows up in tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from pynetdicom import transport

__all__ = ["http_sets_nodelay", "install", "installed"]

_lock = threading.Lock()
_installed = False


def _set_nodelay(sock: socket.socket) -> None:
    # A socket that is already closed or not TCP (e.g. a test double) needs nothing.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def install() -> None:
    """Patch pynetdicom so that all its sockets have TCP_NODELAY set (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        original_create = transport.AssociationSocket._create_socket
        original_get_request = transport.AssociationServer.get_request

        def _create_socket(self: Any, address: Any) -> socket.socket:
            sock = original_create(self, address)
            _set_nodelay(sock)
            return sock

        def get_request(self: Any) -> tuple[socket.socket, tuple[str, int]]:
            client_socket, address = original_get_request(self)
            _set_nodelay(client_socket)
            return client_socket, address

        transport.AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
        transport.AssociationServer.get_request = get_request  # type: ignore[method-assign]
        _installed = True


def installed() -> bool:
    """Whether :func:`install` has run in this process."""
    return _installed


def http_sets_nodelay() -> bool:
    """True if urllib3 (hence requests and dicomweb-client) sets TCP_NODELAY itself."""
    from urllib3.connection import HTTPConnection

    option = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return option in HTTPConnection.default_socket_options
