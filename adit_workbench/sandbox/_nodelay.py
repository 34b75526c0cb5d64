"""TCP_NODELAY on pynetdicom's sockets, for the sandbox only.

pynetdicom 3 sets only SO_REUSEADDR; with Nagle on, every DIMSE message can wait ~40 ms
for a delayed ACK on loopback, which caps C-GET/C-MOVE/C-STORE at ~20 instances/s. The
DICOM layer owns the project-wide patch (``adit_workbench.dicom.nodelay.install``); this
private fallback is used only while that module does not exist, so the sandbox does not
depend on the order in which the two were written.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import threading
from typing import Any

from pynetdicom import transport

_lock = threading.Lock()
_installed = False


def _set_nodelay(sock: socket.socket) -> None:
    # A socket the peer already closed raises; the association fails on its own then.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def install() -> None:
    """Turn TCP_NODELAY on for every pynetdicom socket created from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        try:
            shared = importlib.import_module("adit_workbench.dicom.nodelay")
        except ImportError:
            shared = None
        if shared is not None and callable(getattr(shared, "install", None)):
            shared.install()
            _installed = True
            return

        orig_create = transport.AssociationSocket._create_socket
        orig_get_request = transport.AssociationServer.get_request

        def _create_socket(self: Any, *args: Any, **kwargs: Any) -> socket.socket:
            sock = orig_create(self, *args, **kwargs)
            _set_nodelay(sock)
            return sock

        def get_request(self: Any) -> tuple[socket.socket, Any]:
            client_socket, address = orig_get_request(self)
            _set_nodelay(client_socket)
            return client_socket, address

        transport.AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
        transport.AssociationServer.get_request = get_request  # type: ignore[method-assign]
        _installed = True
