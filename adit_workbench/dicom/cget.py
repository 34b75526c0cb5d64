"""C-GET off the socket: a retrieve's instances as Part-10 bytes, at the wire's speed.

pynetdicom spends about 2.9 ms of CPU on each 0.5 MB instance a C-GET delivers
(250 CT instances: 0.72 s of CPU; this module: 0.09 s). Its DUL thread reads the socket
in 4 KB chunks and decodes every PDU into objects, its reactor thread polls for them with
1 ms sleeps, reassembles the message in a BytesIO and decodes the command into a Dataset;
both threads contend for the GIL with whatever uses the instance. A streaming retrieve
wants only the bytes, so for that one exchange this module speaks the DICOM upper layer
(PS3.8) itself, on one thread:

* associate, proposing what pynetdicom would (the chosen Q/R GET model, the storage
  classes with the SCP role; tests compare the bytes); the PDUs are encoded and read
  here, because pynetdicom's PDU classes spend some 25 ms on these 121 contexts, in
  every worker of every transfer (a rejection is still read by pynetdicom);
* send the C-GET-RQ, then for each C-STORE-RQ sub-operation read its PDUs whole, answer
  the C-STORE-RSP at once (so the server sends the next instance while the caller works on
  this one) and yield the instance with its file meta;
* the final C-GET-RSP ends the stream (returned, decoded, as the generator's value);
  release. Closing the generator early sends a C-CANCEL-RQ, refuses what still arrives
  and releases once the server has answered.

Everything else DIMSE (queries, C-MOVE, C-STORE, and C-GET with a caller's handler) stays
on pynetdicom's pooled associations. No asynchronous operations, no extended negotiation.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import struct
import time
from collections.abc import Generator, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from pydicom import Dataset
from pynetdicom import (
    DEFAULT_TRANSFER_SYNTAXES,
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
)
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_RJ

from ..errors import (
    AssociationRejected,
    InputError,
    NodeError,
    NodeTimeout,
    NodeUnreachable,
    NotSupported,
)
from .association import GET_STORAGE_SOP_CLASSES

if TYPE_CHECKING:
    from .dimse import DimseNode

__all__ = ["receive"]

log = logging.getLogger(__name__)

_OPERATION = "C-GET"
_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
_IMPLICIT, _EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
_PREAMBLE = b"\x00" * 128 + b"DICM"

# PDU types (PS3.8 9.3.1)
_ASSOCIATE_RQ, _ASSOCIATE_AC, _ASSOCIATE_RJ, _P_DATA = 0x01, 0x02, 0x03, 0x04
_RELEASE_RQ, _RELEASE_RP, _ABORT = 0x05, 0x06, 0x07
_RELEASE_RQ_PDU = struct.pack(">BBI4x", _RELEASE_RQ, 0, 4)
_RELEASE_RP_PDU = struct.pack(">BBI4x", _RELEASE_RP, 0, 4)
_ABORT_PDU = struct.pack(">BBI4x", _ABORT, 0, 4)  # source: service user, no reason

# Command fields and elements of group 0000 (PS3.7 E.1)
_C_STORE_RQ, _C_STORE_RSP, _C_GET_RSP, _C_GET_RQ, _C_CANCEL_RQ = (
    0x0001, 0x8001, 0x8010, 0x0010, 0x0FFF,
)  # fmt: skip
_SOP_CLASS, _FIELD, _MESSAGE_ID, _RESPONDING_TO = 0x0002, 0x0100, 0x0110, 0x0120
_PRIORITY, _DATASET_TYPE, _STATUS, _SOP_INSTANCE = 0x0700, 0x0800, 0x0900, 0x1000
_NO_DATASET = 0x0101
_PENDING = (0xFF00, 0xFF01)
_REFUSED = 0xA700  # out of resources: what is left after a cancel
_SOP_CLASS_NOT_SUPPORTED = 0x0122  # arrived on a context we did not accept

_MESSAGE_ID_VALUE = 1


class _Closed(Exception):
    """The peer aborted, released or dropped the connection."""


# -- commands: group 0000, always implicit VR little endian ----------------------------
def _element(element: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def _command(*elements: tuple[int, bytes]) -> bytes:
    body = b"".join(_element(tag, value) for tag, value in elements)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _parse(command: bytes) -> dict[int, bytes]:
    """The elements of a command set, by element number (values raw)."""
    fields: dict[int, bytes] = {}
    at, end = 0, len(command)
    while at + 8 <= end:
        _group, element, length = struct.unpack_from("<HHI", command, at)
        fields[element] = command[at + 8 : at + 8 + length]
        at += 8 + length
    return fields


def _number(fields: dict[int, bytes], element: int) -> int:
    raw = fields.get(element, b"")
    return struct.unpack("<H", raw)[0] if len(raw) == 2 else -1


# -- association -----------------------------------------------------------------------
def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16)[:16]


@lru_cache(maxsize=16)
def _request(calling: str, called: str, model: str) -> tuple[bytes, tuple[str, ...]]:
    """The A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) and the abstract syntax of each context ID.

    Encoded here, in the order pynetdicom encodes it: its PDU classes took 13 ms for
    these 121 contexts, in every worker process of every transfer.
    """
    syntaxes = (model, *GET_STORAGE_SOP_CLASSES)
    items = [_item(0x10, _APPLICATION_CONTEXT.encode("ascii"))]
    for index, uid in enumerate(syntaxes):
        offered = [_IMPLICIT, _EXPLICIT] if index == 0 else DEFAULT_TRANSFER_SYNTAXES
        sub_items = _item(0x30, uid.encode("ascii")) + b"".join(
            _item(0x40, syntax.encode("ascii")) for syntax in offered
        )
        items.append(_item(0x20, struct.pack(">B3x", 2 * index + 1) + sub_items))
    user = [
        _item(0x51, struct.pack(">I", 0)),  # no limit: fewer, larger reads
        _item(0x52, str(PYNETDICOM_IMPLEMENTATION_UID).encode("ascii")),
        _item(0x55, PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")),
    ]
    for uid in GET_STORAGE_SOP_CLASSES:  # we take the SCP role: the server C-STOREs to us
        raw = uid.encode("ascii")
        user.append(_item(0x54, struct.pack(">H", len(raw)) + raw + b"\x00\x01"))
    items.append(_item(0x50, b"".join(user)))
    body = struct.pack(">H2x", 1) + _ae(called) + _ae(calling) + bytes(32) + b"".join(items)
    return struct.pack(">BxI", _ASSOCIATE_RQ, len(body)) + body, syntaxes


def _accepted(body: bytes, syntaxes: tuple[str, ...]) -> tuple[dict[int, tuple[str, str]], int]:
    """From an A-ASSOCIATE-AC's body (PS3.8 9.3.3): the accepted contexts as
    ``{ID: (abstract syntax, transfer syntax)}`` and the peer's maximum PDU length."""
    contexts: dict[int, tuple[str, str]] = {}
    peer_max = 0
    at = 68  # protocol version, reserved fields and the echoed AE titles
    while at + 4 <= len(body):
        kind, length = body[at], int.from_bytes(body[at + 2 : at + 4], "big")
        value = body[at + 4 : at + 4 + length]
        at += 4 + length
        if kind == 0x21 and len(value) >= 8 and value[2] == 0 and value[4] == 0x40:
            index = (value[0] - 1) // 2
            if value[0] % 2 and index < len(syntaxes):
                size = int.from_bytes(value[6:8], "big")
                syntax = value[8 : 8 + size].rstrip(b"\x00 ").decode("ascii", "replace")
                contexts[value[0]] = (syntaxes[index], syntax)
        elif kind == 0x50:
            sub = 0
            while sub + 4 <= len(value):
                sub_kind, size = value[sub], int.from_bytes(value[sub + 2 : sub + 4], "big")
                if sub_kind == 0x51 and size == 4:
                    peer_max = int.from_bytes(value[sub + 4 : sub + 8], "big")
                sub += 4 + size
    return contexts, peer_max


class _Link:
    """One association's socket: whole PDUs in, P-DATA messages out."""

    def __init__(self, node: DimseNode) -> None:
        self.node = node.name
        self.settings = node.settings
        spec = node.spec
        self.where = f"{spec.host}:{spec.port}"
        timeout = self.settings.connect_timeout
        try:
            self.sock = socket.create_connection((spec.host, spec.port), timeout=timeout)
        except TimeoutError as exc:
            raise NodeTimeout(
                self.node, _OPERATION, f"no association with {self.where} within {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise NodeUnreachable(self.node, _OPERATION, f"cannot connect to {self.where}") from exc
        # Without it the data set PDU after a command PDU waits ~40 ms (DESIGN.md §4).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        #: context ID -> (abstract syntax, transfer syntax), accepted ones only
        self.contexts: dict[int, tuple[str, str]] = {}
        self.peer_max = 0

    # -- reading -----------------------------------------------------------------------
    def _exact(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            count = self.sock.recv_into(view[got:])
            if not count:
                raise _Closed("the connection was closed by the peer")
            got += count
        return buffer

    def read(self, timeout: float) -> tuple[int, bytearray]:
        """The next PDU as (type, body); raises the workbench's errors on a dead link."""
        self.sock.settimeout(timeout)
        try:
            head = self._exact(6)
            kind, length = head[0], int.from_bytes(head[2:6], "big")
            return kind, self._exact(length)
        except TimeoutError as exc:
            raise NodeTimeout(self.node, _OPERATION, f"no response within {timeout:g} s") from exc
        except OSError as exc:
            raise _Closed(f"connection lost ({type(exc).__name__})") from exc

    # -- writing -----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Closed(f"connection lost ({type(exc).__name__})") from exc

    def message(self, context: int, command: bytes, dataset: bytes = b"") -> None:
        """Send a DIMSE message as P-DATA-TF PDUs within the peer's maximum length."""
        chunk = self.peer_max - 6 if self.peer_max > 6 else max(len(command), len(dataset), 1)
        pdus = []
        for payload, is_command in ((command, True), (dataset, False)):
            for at in range(0, len(payload), chunk):
                fragment = payload[at : at + chunk]
                control = (1 if is_command else 0) | (2 if at + chunk >= len(payload) else 0)
                item = struct.pack(">IBB", len(fragment) + 2, context, control) + fragment
                pdus.append(struct.pack(">BBI", _P_DATA, 0, len(item)) + item)
        self.send(b"".join(pdus))

    # -- association -------------------------------------------------------------------
    def associate(self, calling: str, called: str, model: str) -> None:
        request, syntaxes = _request(calling, called, model)
        self.send(request)
        timeout = self.settings.connect_timeout
        try:
            kind, body = self.read(timeout)
        except NodeTimeout:
            raise NodeTimeout(
                self.node, _OPERATION, f"no association with {self.where} within {timeout:g} s"
            ) from None
        except _Closed as exc:
            raise AssociationRejected(
                self.node, _OPERATION, f"association aborted during negotiation: {exc}"
            ) from None
        pdu_bytes = struct.pack(">BBI", kind, 0, len(body)) + bytes(body)
        if kind == _ASSOCIATE_RJ:
            rejection = A_ASSOCIATE_RJ()
            rejection.decode(pdu_bytes)
            raise AssociationRejected(
                self.node, _OPERATION, f"association rejected by {called}: {rejection.reason_str}"
            )
        if kind != _ASSOCIATE_AC:
            raise AssociationRejected(
                self.node, _OPERATION, f"association refused (PDU type 0x{kind:02X})"
            )
        self.contexts, self.peer_max = _accepted(bytes(body), syntaxes)

    def release(self) -> None:
        """A-RELEASE, or an abort if the peer does not answer it in time."""
        try:
            self.send(_RELEASE_RQ_PDU)
            deadline = time.monotonic() + self.settings.network_timeout
            while True:
                kind, _ = self.read(max(0.01, deadline - time.monotonic()))
                if kind in (_RELEASE_RP, _ABORT):
                    break
                if kind == _RELEASE_RQ:  # release collision (PS3.8 7.2.2)
                    self.send(_RELEASE_RP_PDU)
                    break
        except (NodeError, _Closed):
            self.abort()
            return
        self.close()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(_ABORT_PDU)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _get_request(model: str, identifier: Dataset, syntax: str) -> tuple[bytes, bytes]:
    encoded = encode(identifier, syntax == _IMPLICIT, True)
    if encoded is None:
        raise InputError("the C-GET identifier cannot be encoded")
    command = _command(
        (_SOP_CLASS, model.encode("ascii")),
        (_FIELD, _us(_C_GET_RQ)),
        (_MESSAGE_ID, _us(_MESSAGE_ID_VALUE)),
        (_PRIORITY, _us(0)),
        (_DATASET_TYPE, _us(0x0001)),
    )
    return command, encoded


def _cancel_request(model: str) -> bytes:
    return _command(
        (_SOP_CLASS, model.encode("ascii")),
        (_FIELD, _us(_C_CANCEL_RQ)),
        (_RESPONDING_TO, _us(_MESSAGE_ID_VALUE)),
        (_DATASET_TYPE, _us(_NO_DATASET)),
    )


def _store_response(request: dict[int, bytes], status: int) -> bytes:
    return _command(
        (_SOP_CLASS, request.get(_SOP_CLASS, b"")),
        (_FIELD, _us(_C_STORE_RSP)),
        (_RESPONDING_TO, request.get(_MESSAGE_ID, _us(0))),
        (_DATASET_TYPE, _us(_NO_DATASET)),
        (_STATUS, _us(status)),
        (_SOP_INSTANCE, request.get(_SOP_INSTANCE, b"")),
    )


def _meta_element(element: int, vr: bytes, value: bytes, pad: bytes = b"\x00") -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


#: File meta elements after the instance UID: the same for every instance of a syntax.
@lru_cache(maxsize=64)
def _meta_tail(syntax: str) -> bytes:
    return (
        _meta_element(0x0010, b"UI", syntax.encode("ascii"))
        + _meta_element(0x0012, b"UI", str(PYNETDICOM_IMPLEMENTATION_UID).encode("ascii"))
        + _meta_element(0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii"), b" ")
    )


def _file_meta(request: dict[int, bytes], syntax: str) -> bytes:
    """Preamble, prefix and file meta group of a received instance, as pynetdicom's
    ``encoded_dataset()`` writes them (encoded here: pydicom's writer costs a quarter
    of the time this module spends per instance)."""
    body = (
        struct.pack("<HH2s2xI", 0x0002, 0x0001, b"OB", 2)
        + b"\x00\x01"
        + _meta_element(0x0002, b"UI", request.get(_SOP_CLASS, b"").rstrip(b"\x00 "))
        + _meta_element(0x0003, b"UI", request.get(_SOP_INSTANCE, b"").rstrip(b"\x00 "))
        + _meta_tail(syntax)
    )
    return _PREAMBLE + struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


#: A complete DIMSE message: context ID, command fields, command bytes, data set fragments.
_Message = tuple[int, dict[int, bytes], bytes, list[memoryview] | None]


def _messages(link: _Link, timeout: float) -> Iterator[_Message]:
    """The DIMSE messages arriving on ``link``, each once its last fragment is in."""
    command_parts: list[memoryview] = []
    data_parts: list[memoryview] = []
    pending: tuple[dict[int, bytes], bytes] | None = None  # a command awaiting its data set
    while True:
        kind, body = link.read(timeout)
        if kind != _P_DATA:
            if kind == _RELEASE_RQ:
                link.send(_RELEASE_RP_PDU)
                raise _Closed("the peer released the association mid-operation")
            if kind == _ABORT:
                raise _Closed("the association was aborted by the peer")
            raise _Closed(f"unexpected PDU type 0x{kind:02X}")
        view = memoryview(body)
        at, end = 0, len(body)
        while at + 6 <= end:
            length = int.from_bytes(body[at : at + 4], "big")
            context, control = body[at + 4], body[at + 5]
            fragment = view[at + 6 : at + 4 + length]
            at += 4 + length
            if control & 1:
                command_parts.append(fragment)
                if not control & 2:
                    continue
                command = b"".join(command_parts)
                command_parts = []
                fields = _parse(command)
                if _number(fields, _DATASET_TYPE) == _NO_DATASET:
                    yield context, fields, command, None
                else:
                    pending = fields, command
            else:
                data_parts.append(fragment)
                if not control & 2:
                    continue
                if pending is None:
                    raise _Closed("a data set arrived without its command")
                yield context, pending[0], pending[1], data_parts
                pending, data_parts = None, []


def receive(
    node: DimseNode, identifier: Dataset, model: str, root: str
) -> Generator[bytes, None, Dataset]:
    """C-GET ``identifier`` under ``model``; yield each instance's Part-10 bytes.

    Returns the final C-GET-RSP command as a Dataset (Status, the sub-operation counts,
    ErrorComment) for the caller to judge. Network failures raise the workbench's node
    errors; ``root`` names the model in the error when the server does not accept it.
    """
    link = _Link(node)
    try:
        link.associate(node.calling_ae, node.spec.ae_title, model)
    except BaseException:
        link.abort()
        raise
    get_context = next((cid for cid, (uid, _) in link.contexts.items() if uid == model), 0)
    if not get_context:
        link.release()
        raise NotSupported(node.name, _OPERATION, f"{root}-root C-GET not accepted")
    clean = False  # whether the exchange ended in step with the peer (release, not abort)
    try:
        command, dataset = _get_request(model, identifier, link.contexts[get_context][1])
        link.message(get_context, command, dataset)
        messages = _messages(link, node.settings.dimse_timeout)
        for context, fields, command, parts in messages:
            if _number(fields, _FIELD) == _C_GET_RSP:
                if _number(fields, _STATUS) in _PENDING:
                    continue
                final = decode(io.BytesIO(command), True, True)
                if final is None:
                    raise _Closed("the final C-GET response cannot be decoded")
                clean = True
                return final
            accepted = _answer(link, context, fields, parts, refuse=False)
            if accepted is None or parts is None:
                continue
            try:
                yield b"".join([_file_meta(fields, accepted), *parts])
            except GeneratorExit:
                clean = _cancel(link, messages, get_context, model)
                raise
        raise AssertionError("unreachable")  # pragma: no cover
    except _Closed as exc:
        raise AssociationRejected(node.name, _OPERATION, str(exc)) from None
    finally:
        if clean:
            link.release()
        else:
            link.abort()


def _answer(
    link: _Link,
    context: int,
    fields: dict[int, bytes],
    parts: list[memoryview] | None,
    refuse: bool,
) -> str | None:
    """Answer a C-STORE sub-operation; the transfer syntax if the instance is taken."""
    if _number(fields, _FIELD) != _C_STORE_RQ or parts is None:
        raise _Closed(f"unexpected DIMSE message 0x{_number(fields, _FIELD) & 0xFFFF:04X}")
    accepted = link.contexts.get(context)
    status = _SOP_CLASS_NOT_SUPPORTED if accepted is None else _REFUSED if refuse else 0
    link.message(context, _store_response(fields, status))
    return None if status else accepted[1]  # type: ignore[index]


def _cancel(link: _Link, messages: Iterator[_Message], get_context: int, model: str) -> bool:
    """C-CANCEL, refuse what is still on its way, wait for the final response.

    True when the server answered (the association can be released), False when it
    failed to (the caller aborts instead). Errors stay here: the consumer is closing.
    """
    try:
        link.message(get_context, _cancel_request(model))
        for context, fields, _command, parts in messages:
            if _number(fields, _FIELD) == _C_GET_RSP:
                if _number(fields, _STATUS) not in _PENDING:
                    return True
                continue
            _answer(link, context, fields, parts, refuse=True)
    except (NodeError, _Closed):
        log.debug("a cancelled C-GET did not end cleanly; aborting")
    return False
