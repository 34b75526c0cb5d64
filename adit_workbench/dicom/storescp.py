"""A Store SCP on plain sockets: C-STOREs taken at the wire's speed, for the receiver.

The receiver (:mod:`.receiver`) is where a C-MOVE sends every instance of a transfer.
On pynetdicom's AE server it spent about 4 ms of CPU per 0.5 MB instance (see
:mod:`.upperlayer` for why), which held a C-MOVE transfer to a sixth of what the PACS
could send. This server accepts associations itself: one thread per association reads
whole PDUs, answers C-ECHO, and hands each C-STORE's Part-10 bytes to a callback whose
status it returns. It accepts what the pynetdicom receiver accepted: verification and
the storage SOP classes, in the first proposed transfer syntax it supports, with the
default roles (no role selection), no extended negotiation.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable, Collection

from pynetdicom import DEFAULT_TRANSFER_SYNTAXES

from ..errors import NodeError
from . import upperlayer as ul

__all__ = ["StoreHandler", "StoreServer"]

log = logging.getLogger(__name__)

#: ``(called AE title, C-STORE-RQ command fields, Part-10 bytes) -> status``.
StoreHandler = Callable[[str, dict[int, bytes], bytes], int]

_VERIFICATION = "1.2.840.10008.1.1"
_NAME, _OPERATION = "receiver", "C-STORE"
# A-ASSOCIATE-AC presentation context results (PS3.8 9.3.3.2)
_ACCEPTED, _ABSTRACT_NOT_SUPPORTED, _SYNTAXES_NOT_SUPPORTED = 0, 3, 4
# A-ASSOCIATE-RJ: rejected (transient), by the service provider (presentation),
# local limit exceeded (PS3.8 9.3.4)
_BUSY = struct.pack(">BxI", ul.ASSOCIATE_RJ, 4) + bytes([0, 2, 3, 2])


def _parse_request(body: bytes) -> tuple[str, list[tuple[int, str, list[str]]], int]:
    """From an A-ASSOCIATE-RQ's body: the called AE title, the proposed contexts as
    ``(ID, abstract syntax, transfer syntaxes)`` and the peer's maximum PDU length."""
    called = body[4:20].decode("ascii", "replace").strip()
    contexts: list[tuple[int, str, list[str]]] = []
    peer_max = 0
    for kind, value in ul.items(body, 68):
        if kind == 0x20 and value:
            abstract, syntaxes = "", []
            for sub_kind, sub_value in ul.items(value, 4):
                text = sub_value.rstrip(b"\x00 ").decode("ascii", "replace")
                if sub_kind == 0x30:
                    abstract = text
                elif sub_kind == 0x40:
                    syntaxes.append(text)
            contexts.append((value[0], abstract, syntaxes))
        elif kind == 0x50:
            for sub_kind, sub_value in ul.items(value):
                if sub_kind == 0x51 and len(sub_value) == 4:
                    peer_max = int.from_bytes(sub_value, "big")
    return called, contexts, peer_max


def _accept(
    body: bytes, contexts: list[tuple[int, str, list[str]]], supported: Collection[str]
) -> tuple[bytes, dict[int, tuple[str, str]]]:
    """The A-ASSOCIATE-AC for a request, and the contexts it accepts."""
    accepted: dict[int, tuple[str, str]] = {}
    items = [ul.item(0x10, ul.APPLICATION_CONTEXT.encode("ascii"))]
    for context_id, abstract, syntaxes in contexts:
        chosen = next((s for s in syntaxes if s in DEFAULT_TRANSFER_SYNTAXES), "")
        if abstract not in supported:
            result = _ABSTRACT_NOT_SUPPORTED
        elif not chosen:
            result = _SYNTAXES_NOT_SUPPORTED
        else:
            result = _ACCEPTED
            accepted[context_id] = (abstract, chosen)
        # A refused context still carries a transfer syntax sub-item (not significant).
        syntax = (chosen or (syntaxes[0] if syntaxes else ul.IMPLICIT)).encode("ascii")
        items.append(
            ul.item(0x21, struct.pack(">BxBx", context_id, result) + ul.item(0x40, syntax))
        )
    user = [
        ul.item(0x51, struct.pack(">I", 0)),  # no limit: fewer, larger reads
        ul.item(0x52, ul.IMPLEMENTATION_UID.encode("ascii")),
        ul.item(0x55, ul.IMPLEMENTATION_VERSION.encode("ascii")),
    ]
    items.append(ul.item(0x50, b"".join(user)))
    # Echo the called and calling AE titles and the reserved field as requested.
    reply = struct.pack(">H2x", 1) + body[4:68] + b"".join(items)
    return struct.pack(">BxI", ul.ASSOCIATE_AC, len(reply)) + reply, accepted


class StoreServer:
    """Listens on ``host:port`` (0: any free port) and serves associations in threads.

    Parameters
    ----------
    on_store:
        Called for each C-STORE with the called AE title, the request's command fields
        and the instance's Part-10 bytes; returns the status to answer (0 when kept).
    storage:
        The storage SOP classes to accept (verification is always accepted).
    timeout:
        Seconds a peer may stay silent on an open association before it is aborted.
    max_associations:
        More at once are rejected (transient: the peer may retry).
    """

    def __init__(
        self,
        host: str,
        port: int,
        on_store: StoreHandler,
        *,
        storage: Collection[str],
        timeout: float,
        max_associations: int = 32,
    ) -> None:
        self.on_store = on_store
        self.supported = frozenset(storage) | {_VERIFICATION}
        self.timeout = timeout
        self.max_associations = max_associations
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
            self.socket.listen(64)
        except OSError:
            self.socket.close()
            raise
        self.port: int = self.socket.getsockname()[1]
        self._links: set[ul.Link] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="wb-storescp", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop listening and abort the associations still open (idempotent)."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            with contextlib.suppress(OSError):
                link.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    def forget(self) -> None:
        """In a forked child: close this process's copies of the sockets, leaving the
        parent's listening and connections untouched (``close``, never ``shutdown``)."""
        self._stopped.set()
        for sock in [self.socket, *(link.sock for link in self._links)]:
            with contextlib.suppress(OSError):
                sock.close()

    # -- associations --------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _address = self.socket.accept()
            except OSError:  # closed by shutdown()
                return
            link = ul.Link(sock, _NAME, _OPERATION)
            with self._lock:
                busy = len(self._links) >= self.max_associations
                if not busy:
                    self._links.add(link)
            if busy:
                threading.Thread(target=self._refuse, args=(link,), daemon=True).start()
                continue
            threading.Thread(
                target=self._serve, args=(link,), name="wb-storescp-assoc", daemon=True
            ).start()

    def _refuse(self, link: ul.Link) -> None:
        with contextlib.suppress(NodeError, ul.Closed):
            link.read(self.timeout)  # the A-ASSOCIATE-RQ
            link.send(_BUSY)
        link.close()

    def _serve(self, link: ul.Link) -> None:
        try:
            kind, body = link.read(self.timeout)
            if kind != ul.ASSOCIATE_RQ:
                link.abort()
                return
            called, proposed, link.peer_max = _parse_request(bytes(body))
            reply, link.contexts = _accept(bytes(body), proposed, self.supported)
            link.send(reply)
            self._exchange(link, called)
        except (NodeError, ul.Closed) as exc:
            log.debug("receiver: association ended: %s", exc)
            link.abort()
        except Exception:  # a handler's bug must not leave the peer hanging
            log.exception("receiver: association failed")
            link.abort()
        finally:
            with self._lock:
                self._links.discard(link)

    def _exchange(self, link: ul.Link, called: str) -> None:
        for context, fields, _command, parts in ul.messages(link, self.timeout):
            field = ul.number(fields, ul.FIELD)
            if field == ul.C_ECHO_RQ:
                link.message(context, _echo_response(fields))
            elif field == ul.C_STORE_RQ and parts is not None and context in link.contexts:
                data = b"".join([ul.file_meta(fields, link.contexts[context][1]), *parts])
                status = self.on_store(called, fields, data)
                link.message(context, ul.store_response(fields, status))
            else:
                raise ul.Closed(f"unexpected DIMSE message 0x{field & 0xFFFF:04X}")


def _echo_response(request: dict[int, bytes]) -> bytes:
    return ul.command(
        (ul.SOP_CLASS, request.get(ul.SOP_CLASS, _VERIFICATION.encode("ascii"))),
        (ul.FIELD, ul.us(ul.C_ECHO_RSP)),
        (ul.RESPONDING_TO, request.get(ul.MESSAGE_ID, ul.us(0))),
        (ul.DATASET_TYPE, ul.us(ul.NO_DATASET)),
        (ul.STATUS, ul.us(0)),
    )
