"""A Store SCP on plain sockets: C-STOREs taken at the wire's speed, for the receiver.

The receiver (:mod:`.receiver`) is where a C-MOVE sends every instance of a transfer,
and it listens where every PACS can reach it: hostile bytes are its daily bread. Each
association runs :class:`~.fsm.Machine` in a thread of its own:

* the A-ASSOCIATE-RQ must arrive whole within the ARTIM time, within a length bound;
* the called AE title must be ours, the application context DICOM's, and the calling
  AE title with the peer's address must pass ``allow`` (the caller's list of known
  nodes: this layer reads no database), or the request is rejected with the reason;
* any storage SOP class is accepted, private ones included (:func:`is_storage_class`),
  with the first proposed transfer syntax we know (compressed ones included), and
  verification; the data set is handed on as it came, with its file meta;
* a C-STORE is answered with the status ``on_store`` returns; a C-STORE without a data
  set, a data set without a command or a broken PDU ends in an abort.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from pynetdicom.sop_class import _STORAGE_CLASSES

from . import pdus
from . import upperlayer as ul
from .fsm import MAX_MESSAGE, MAX_PDU, Machine, State

__all__ = ["PartsHandler", "PeerCheck", "StoreHandler", "StoreServer", "is_storage_class"]

log = logging.getLogger(__name__)

#: ``(C-STORE-RQ command fields, Part-10 bytes) -> status``.
StoreHandler = Callable[[dict[int, bytes], bytes], int]
#: ``(C-STORE-RQ command fields, transfer syntax, data set fragments) -> status``: the
#: fragments as they arrived (views into the PDUs), not joined into one copy.
PartsHandler = Callable[[dict[int, bytes], str, list[memoryview]], int]
#: ``(calling AE title, peer IP address) -> whether it may store here``.
PeerCheck = Callable[[str, str], bool]

VERIFICATION = "1.2.840.10008.1.1"
_NAME, _OPERATION = "receiver", "C-STORE"
_SOP_CLASS_NOT_SUPPORTED = 0x0122
_STANDARD = frozenset(_STORAGE_CLASSES.values())


def is_storage_class(uid: str) -> bool:
    """Whether an abstract syntax is one a Store SCP should take: every standard
    storage class (also ones newer than pynetdicom's list) and any private class; not
    the other standard services (query/retrieve, worklist, print, commitment …)."""
    if uid in _STANDARD or uid.startswith("1.2.840.10008.5.1.4.1.1."):
        return True
    return not uid.startswith("1.2.840.10008.")


class StoreServer:
    """Listens on ``host:port`` (0: any free port) and serves associations in threads.

    Parameters
    ----------
    on_store:
        Called for each C-STORE with the request's command fields and the instance's
        Part-10 bytes; returns the status to answer (0 when kept).
    on_parts:
        Instead of ``on_store``: called with the command fields, the transfer syntax
        and the data set's fragments, so that a handler writing them to a file saves
        joining half a megabyte per instance first (the receiver).
    ae_title:
        Ours: a request calling another is rejected.
    allow:
        Which calling AE titles and peer addresses may associate; None lets anyone.
    accepts:
        Which abstract syntaxes to accept (verification always is).
    timeout:
        Seconds each PDU may take on an open association before it is aborted.
    artim:
        Seconds for the whole A-ASSOCIATE-RQ to arrive, and to wait for the close.
    max_associations:
        More at once are rejected (transient: the peer may retry).
    max_pdu, max_message:
        The P-DATA-TF length we announce and enforce; the largest data set held.
    """

    def __init__(
        self,
        host: str,
        port: int,
        on_store: StoreHandler | None,
        *,
        on_parts: PartsHandler | None = None,
        ae_title: str,
        allow: PeerCheck | None = None,
        accepts: Callable[[str], bool] = is_storage_class,
        timeout: float,
        artim: float = 30.0,
        max_associations: int = 32,
        max_pdu: int = MAX_PDU,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        if (on_store is None) == (on_parts is None):
            raise ValueError("give on_store or on_parts")
        self.on_store = on_store
        self.on_parts = on_parts
        self.ae_title = ae_title.strip()
        self.allow = allow
        self.accepts = accepts
        self.timeout = timeout
        self.artim = artim
        self.max_associations = max_associations
        self.max_pdu = max_pdu
        self.max_message = max_message
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
        self._refusing = 0
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

    @property
    def open_count(self) -> int:
        """Connections being served (associations and refusals) right now."""
        with self._lock:
            return len(self._links) + self._refusing

    # -- associations --------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, address = self.socket.accept()
            except OSError:  # closed by shutdown()
                return
            link = ul.Link(sock, _NAME, _OPERATION)
            with self._lock:
                busy = len(self._links) >= self.max_associations
                if busy and self._refusing >= self.max_associations:
                    link.close()  # a flood: not even a thread to say no
                    continue
                if busy:
                    self._refusing += 1
                else:
                    self._links.add(link)
            threading.Thread(
                target=self._serve, args=(link, address[0], busy), name="wb-storescp-assoc",
                daemon=True,
            ).start()  # fmt: skip

    def _serve(self, link: ul.Link, host: str, busy: bool) -> None:
        machine = Machine(
            link,
            requestor=False,
            artim=self.artim,
            max_receive=self.max_pdu,
            max_message=self.max_message,
        )
        try:
            request = machine.wait_request()
            if request is None:
                log.debug("receiver: no association from %s: %s", host, machine.ended)
                return
            machine.respond(self._answer(machine, request, host, busy))
            if machine.state is State.STA6:
                self._exchange(machine)
            elif machine.ended:
                log.info("receiver: refused an association from %s: %s", host, machine.ended)
        except ul.Silent:
            machine.abort("the peer went silent")
        except ul.Closed as exc:
            log.debug("receiver: association ended: %s", exc)
        except Exception:  # a handler's bug must not leave the peer hanging
            log.exception("receiver: association failed")
            machine.abort("")
        finally:
            link.close()
            with self._lock:
                if busy:
                    self._refusing -= 1
                else:
                    self._links.discard(link)

    def _answer(self, machine: Machine, request: pdus.Negotiation, host: str, busy: bool) -> bytes:
        """The A-ASSOCIATE-AC, or the A-ASSOCIATE-RJ saying why not."""
        reject = None
        if busy:
            reject = pdus.TRANSIENT, pdus.RJ_PRESENTATION, pdus.RJ_LOCAL_LIMIT
        elif request.application_context != pdus.APPLICATION_CONTEXT:
            reject = pdus.PERMANENT, pdus.RJ_USER, pdus.RJ_CONTEXT_NOT_SUPPORTED
        elif request.called != self.ae_title:
            reject = pdus.PERMANENT, pdus.RJ_USER, pdus.RJ_CALLED_UNKNOWN
        elif self.allow is not None and not self.allow(request.calling, host):
            reject = pdus.PERMANENT, pdus.RJ_USER, pdus.RJ_CALLING_UNKNOWN
        if reject is not None:
            machine.ended = pdus.describe_reject(bytes([0, *reject]))
            return pdus.reject_pdu(*reject)
        results = []
        for context_id, abstract, syntaxes in request.contexts:
            chosen = next((s for s in syntaxes if s in pdus.ALL_SYNTAXES), "")
            if not context_id % 2 or context_id in machine.contexts:
                result = pdus.NO_REASON  # even or repeated IDs are not contexts
            elif abstract != VERIFICATION and not self.accepts(abstract):
                result = pdus.ABSTRACT_NOT_SUPPORTED
            elif not chosen:
                result = pdus.SYNTAXES_NOT_SUPPORTED
            else:
                result = pdus.ACCEPTED
                machine.contexts[context_id] = (abstract, chosen)
            results.append((context_id, result, chosen or syntaxes[0]))
        machine.peer_max = request.max_length
        return pdus.accept_pdu(_request_fields(request), results, self.max_pdu)

    def _exchange(self, machine: Machine) -> None:
        for context, fields, _command, parts in machine.messages(self.timeout):
            field = ul.number(fields, ul.FIELD)
            abstract, syntax = machine.contexts[context]
            if field == ul.C_ECHO_RQ and parts is None:
                machine.send_message(context, _echo_response(fields))
            elif field == ul.C_STORE_RQ and parts is not None:
                if ul.uid(fields, ul.SOP_CLASS) != abstract or abstract == VERIFICATION:
                    status = _SOP_CLASS_NOT_SUPPORTED  # not what the context was for
                elif self.on_parts is not None:
                    status = self.on_parts(fields, syntax, parts)
                else:
                    assert self.on_store is not None
                    status = self.on_store(fields, b"".join([ul.file_meta(fields, syntax), *parts]))
                machine.send_message(context, ul.store_response(fields, status))
            else:
                raise machine.abort(f"unexpected DIMSE message 0x{field & 0xFFFF:04X}")


def _request_fields(request: pdus.Negotiation) -> bytes:
    """The fixed fields of the A-ASSOCIATE-RQ, to echo in the AC."""
    return bytes(4) + pdus.ae_field(request.called) + pdus.ae_field(request.calling) + bytes(32)


def _echo_response(request: dict[int, bytes]) -> bytes:
    return ul.command(
        (ul.SOP_CLASS, request.get(ul.SOP_CLASS, VERIFICATION.encode("ascii"))),
        (ul.FIELD, ul.us(ul.C_ECHO_RSP)),
        (ul.RESPONDING_TO, request.get(ul.MESSAGE_ID, ul.us(0))),
        (ul.DATASET_TYPE, ul.us(ul.NO_DATASET)),
        (ul.STATUS, ul.us(0)),
    )
