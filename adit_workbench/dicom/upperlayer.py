"""The DICOM upper layer (PS3.8) on a plain socket, where pynetdicom's overhead dominates.

pynetdicom spends some 3 ms of CPU on every 0.5 MB instance it receives: its DUL thread
reads the socket in 4 KB chunks and decodes each PDU into objects, its reactor thread
polls for them with 1 ms sleeps, reassembles the message in a BytesIO and decodes the
command into a Dataset, and both contend for the GIL with whatever uses the instance.
The exchanges that move every instance of a transfer need none of that: a C-GET's
incoming C-STOREs and a C-MOVE's pending responses (:mod:`.scu`), and the C-STOREs a
C-MOVE sends to the receiver (:mod:`.storescp`). This module holds what both sides
speak: PDUs read whole with ``recv_into``, DIMSE messages assembled from their
fragments, command sets encoded and read (group 0000, implicit VR little endian), the
file meta of a received instance. Queries, C-ECHO, C-STORE to servers and C-GET with a
caller's handler stay on pynetdicom.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from functools import lru_cache

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from ..errors import NodeError, NodeTimeout, NodeUnreachable

__all__ = ["Closed", "Link", "Message", "messages"]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
IMPLEMENTATION_UID = str(PYNETDICOM_IMPLEMENTATION_UID)
IMPLEMENTATION_VERSION = PYNETDICOM_IMPLEMENTATION_VERSION
_PREAMBLE = b"\x00" * 128 + b"DICM"

# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA = 0x01, 0x02, 0x03, 0x04
RELEASE_RQ, RELEASE_RP, ABORT = 0x05, 0x06, 0x07
RELEASE_RQ_PDU = struct.pack(">BBI4x", RELEASE_RQ, 0, 4)
RELEASE_RP_PDU = struct.pack(">BBI4x", RELEASE_RP, 0, 4)
ABORT_PDU = struct.pack(">BBI4x", ABORT, 0, 4)  # source: service user, no reason

# Command fields and elements of group 0000 (PS3.7 E.1)
C_STORE_RQ, C_STORE_RSP, C_GET_RQ, C_GET_RSP = 0x0001, 0x8001, 0x0010, 0x8010
C_MOVE_RQ, C_MOVE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0021, 0x8021, 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
SOP_CLASS, FIELD, MESSAGE_ID, RESPONDING_TO = 0x0002, 0x0100, 0x0110, 0x0120
MOVE_DESTINATION, PRIORITY, DATASET_TYPE, STATUS = 0x0600, 0x0700, 0x0800, 0x0900
SOP_INSTANCE = 0x1000
NO_DATASET = 0x0101


class Closed(Exception):
    """The peer aborted, released or dropped the connection, or broke the protocol."""


# -- commands --------------------------------------------------------------------------
def _element(element: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def us(value: int) -> bytes:
    """An US value of a command element."""
    return struct.pack("<H", value)


def command(*elements: tuple[int, bytes]) -> bytes:
    """A command set from ``(element number, raw value)`` pairs, in ascending order."""
    body = b"".join(_element(tag, value) for tag, value in elements)
    return _element(0x0000, struct.pack("<I", len(body))) + body


def parse_command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set, by element number (values raw)."""
    fields: dict[int, bytes] = {}
    at, end = 0, len(data)
    while at + 8 <= end:
        _group, element, length = struct.unpack_from("<HHI", data, at)
        fields[element] = data[at + 8 : at + 8 + length]
        at += 8 + length
    return fields


def number(fields: dict[int, bytes], element: int) -> int:
    """An US command element's value (-1 when absent)."""
    raw = fields.get(element, b"")
    return struct.unpack("<H", raw)[0] if len(raw) == 2 else -1


def uid(fields: dict[int, bytes], element: int) -> str:
    """A UI command element's value, padding stripped."""
    return fields.get(element, b"").rstrip(b"\x00 ").decode("ascii", "replace")


def store_response(request: dict[int, bytes], status: int) -> bytes:
    """The C-STORE-RSP command answering ``request``."""
    return command(
        (SOP_CLASS, request.get(SOP_CLASS, b"")),
        (FIELD, us(C_STORE_RSP)),
        (RESPONDING_TO, request.get(MESSAGE_ID, us(0))),
        (DATASET_TYPE, us(NO_DATASET)),
        (STATUS, us(status)),
        (SOP_INSTANCE, request.get(SOP_INSTANCE, b"")),
    )


# -- PDU items -------------------------------------------------------------------------
def item(kind: int, value: bytes) -> bytes:
    """A PDU item or sub-item: type, reserved, 2-byte length, value."""
    return struct.pack(">BxH", kind, len(value)) + value


def ae_field(title: str) -> bytes:
    """An AE title as the 16 bytes of an A-ASSOCIATE PDU."""
    return title.encode("ascii", "replace").ljust(16)[:16]


def items(data: bytes, at: int = 0) -> Iterator[tuple[int, bytes]]:
    """The ``(type, value)`` of each item in ``data`` from ``at`` on."""
    while at + 4 <= len(data):
        kind, length = data[at], int.from_bytes(data[at + 2 : at + 4], "big")
        yield kind, data[at + 4 : at + 4 + length]
        at += 4 + length


# -- file meta -------------------------------------------------------------------------
def _meta_element(element: int, vr: bytes, value: bytes, pad: bytes = b"\x00") -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


@lru_cache(maxsize=64)
def _meta_tail(syntax: str) -> bytes:
    """The file meta elements after the instance UID: the same for every instance."""
    return (
        _meta_element(0x0010, b"UI", syntax.encode("ascii"))
        + _meta_element(0x0012, b"UI", IMPLEMENTATION_UID.encode("ascii"))
        + _meta_element(0x0013, b"SH", IMPLEMENTATION_VERSION.encode("ascii"), b" ")
    )


def file_meta(request: dict[int, bytes], syntax: str) -> bytes:
    """Preamble, prefix and file meta group for the data set of a C-STORE ``request``,
    as pynetdicom's ``encoded_dataset()`` writes them (pydicom's writer cost a quarter
    of the time spent per received instance)."""
    body = (
        struct.pack("<HH2s2xI", 0x0002, 0x0001, b"OB", 2)
        + b"\x00\x01"
        + _meta_element(0x0002, b"UI", request.get(SOP_CLASS, b"").rstrip(b"\x00 "))
        + _meta_element(0x0003, b"UI", request.get(SOP_INSTANCE, b"").rstrip(b"\x00 "))
        + _meta_tail(syntax)
    )
    return _PREAMBLE + struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body)) + body


# -- the connection --------------------------------------------------------------------
class Link:
    """One association's socket: whole PDUs in, P-DATA messages out.

    ``node`` and ``operation`` name the peer and the service in the errors raised.
    """

    def __init__(self, sock: socket.socket, node: str, operation: str) -> None:
        self.sock = sock
        self.node = node
        self.operation = operation
        # Without it the data set PDU after a command PDU waits ~40 ms (DESIGN.md §4).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        #: context ID -> (abstract syntax, transfer syntax), accepted ones only
        self.contexts: dict[int, tuple[str, str]] = {}
        #: the peer's maximum P-DATA length (0: no limit)
        self.peer_max = 0
        self._timeout: float | None = None

    @classmethod
    def connect(cls, host: str, port: int, node: str, operation: str, timeout: float) -> Link:
        """Open a connection; NodeUnreachable or NodeTimeout when there is none."""
        where = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise NodeTimeout(
                node, operation, f"no association with {where} within {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise NodeUnreachable(node, operation, f"cannot connect to {where}") from exc
        return cls(sock, node, operation)

    # -- reading -----------------------------------------------------------------------
    def _exact(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            count = self.sock.recv_into(view[got:])
            if not count:
                raise Closed("the connection was closed by the peer")
            got += count
        return buffer

    def read(self, timeout: float) -> tuple[int, bytearray]:
        """The next PDU as ``(type, body)``; NodeTimeout after ``timeout`` seconds."""
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout
        try:
            head = self._exact(6)
            return head[0], self._exact(int.from_bytes(head[2:6], "big"))
        except TimeoutError as exc:
            raise NodeTimeout(
                self.node, self.operation, f"no response within {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise Closed(f"connection lost ({type(exc).__name__})") from exc

    # -- writing -----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Closed(f"connection lost ({type(exc).__name__})") from exc

    def message(self, context: int, command_set: bytes, dataset: bytes = b"") -> None:
        """Send a DIMSE message as P-DATA-TF PDUs within the peer's maximum length."""
        chunk = self.peer_max - 6 if self.peer_max > 6 else max(len(command_set), len(dataset), 1)
        pdus = []
        for payload, is_command in ((command_set, True), (dataset, False)):
            for at in range(0, len(payload), chunk):
                fragment = payload[at : at + chunk]
                control = (1 if is_command else 0) | (2 if at + chunk >= len(payload) else 0)
                pdv = struct.pack(">IBB", len(fragment) + 2, context, control) + fragment
                pdus.append(struct.pack(">BBI", P_DATA, 0, len(pdv)) + pdv)
        self.send(b"".join(pdus))

    # -- the end -----------------------------------------------------------------------
    def release(self, timeout: float) -> None:
        """A-RELEASE as requestor, or an abort if the peer does not answer in time."""
        try:
            self.send(RELEASE_RQ_PDU)
            deadline = time.monotonic() + timeout
            while True:
                kind, _ = self.read(max(0.01, deadline - time.monotonic()))
                if kind in (RELEASE_RP, ABORT):
                    break
                if kind == RELEASE_RQ:  # release collision (PS3.8 7.2.2)
                    self.send(RELEASE_RP_PDU)
                    break
        except (NodeError, Closed):
            self.abort()
            return
        self.close()

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(ABORT_PDU)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


#: A complete DIMSE message: context ID, command fields, command bytes, data set fragments.
Message = tuple[int, dict[int, bytes], bytes, list[memoryview] | None]


def messages(link: Link, timeout: float) -> Iterator[Message]:
    """The DIMSE messages arriving on ``link``, each once its last fragment is in.

    A release request is answered and ends the iteration; an abort or any other PDU
    raises :class:`Closed`.
    """
    command_parts: list[memoryview] = []
    data_parts: list[memoryview] = []
    pending: tuple[dict[int, bytes], bytes] | None = None  # a command awaiting its data set
    while True:
        kind, body = link.read(timeout)
        if kind != P_DATA:
            if kind == RELEASE_RQ:
                link.send(RELEASE_RP_PDU)
                link.close()
                return
            if kind == ABORT:
                raise Closed("the association was aborted by the peer")
            raise Closed(f"unexpected PDU type 0x{kind:02X}")
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
                data = b"".join(command_parts)
                command_parts = []
                fields = parse_command(data)
                if number(fields, DATASET_TYPE) == NO_DATASET:
                    yield context, fields, data, None
                else:
                    pending = fields, data
            else:
                data_parts.append(fragment)
                if not control & 2:
                    continue
                if pending is None:
                    raise Closed("a data set arrived without its command")
                yield context, pending[0], pending[1], data_parts
                pending, data_parts = None, []
