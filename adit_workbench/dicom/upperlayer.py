"""The DICOM upper layer (PS3.8) on a plain socket, where pynetdicom's overhead dominates.

pynetdicom spends some 3 ms of CPU on every 0.5 MB instance it receives: its DUL thread
reads the socket in 4 KB chunks and decodes each PDU into objects, its reactor thread
polls for them with 1 ms sleeps, reassembles the message in a BytesIO and decodes the
command into a Dataset, and both contend for the GIL with whatever uses the instance.
The exchanges that move every instance of a transfer need none of that: a C-GET's
incoming C-STOREs and a C-MOVE's pending responses (:mod:`.scu`), and the C-STOREs a
C-MOVE sends to the receiver (:mod:`.storescp`). This module holds the socket (PDUs
read whole with ``recv_into``, each within one deadline and a length bound checked
before anything is allocated), command sets encoded and read (group 0000, implicit VR
little endian) and the file meta of a received instance. The association's states and
the DIMSE message assembly are :mod:`.fsm`'s, the association PDUs :mod:`.pdus`'.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable
from functools import lru_cache

from ..errors import NodeTimeout, NodeUnreachable
from .pdus import IMPLEMENTATION_UID, IMPLEMENTATION_VERSION, Invalid

__all__ = ["Closed", "Link", "Message", "Silent"]

IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
_PREAMBLE = b"\x00" * 128 + b"DICM"
_READ_AHEAD = 1 << 16

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


class Silent(Exception):
    """A PDU did not arrive, whole, before its deadline."""


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
    """The elements of a command set, by element number (values raw); ValueError when
    an element is not in group 0000 or runs past the end."""
    fields: dict[int, bytes] = {}
    at, end = 0, len(data)
    if end >= 12 and data[:8] == b"\x00\x00\x00\x00\x04\x00\x00\x00":
        # Within the Command Group Length: dcmtk (Orthanc) may append the identifier of
        # a failed C-GET (group 0008) to the command fragment; pynetdicom reads it too.
        end = min(end, 12 + int.from_bytes(data[8:12], "little"))
    while at < end:
        if at + 8 > end:
            raise ValueError("a truncated command element")
        group, element, length = struct.unpack_from("<HHI", data, at)
        if group != 0x0000 or at + 8 + length > end:
            raise ValueError(f"command element ({group:04X},{element:04X}) is malformed")
        fields[element] = data[at + 8 : at + 8 + length]
        at += 8 + length
    if FIELD not in fields:
        raise ValueError("a command set without its Command Field")
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
    """One association's socket: whole PDUs in, bytes out.

    ``node`` and ``operation`` name the peer and the service in the errors raised.
    """

    def __init__(self, sock: socket.socket, node: str, operation: str) -> None:
        self.sock = sock
        self.node = node
        self.operation = operation
        # Without it the data set PDU after a command PDU waits ~40 ms (DESIGN.md §4).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        #: a read gave up in the middle of a PDU: the stream has lost its place
        self.desynced = False
        self._midway = False
        self._ahead = bytearray()
        self._pos = 0
        self._scratch = memoryview(bytearray(_READ_AHEAD))

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

    def _recv(self, view: memoryview, deadline: float | None) -> int:
        """One ``recv_into`` within the deadline: the count, or Silent / Closed."""
        if deadline is None:
            self.sock.settimeout(None)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Silent("the PDU did not arrive in time")
            self.sock.settimeout(remaining)
        try:
            count = self.sock.recv_into(view)
        except TimeoutError:
            raise Silent("the PDU did not arrive in time") from None
        except OSError as exc:
            raise Closed(f"connection lost ({type(exc).__name__})") from None
        if not count:
            raise Closed("the connection was closed by the peer")
        return count

    def _exact(self, size: int, deadline: float | None) -> bytearray:
        """The next ``size`` bytes. Small reads go through a read-ahead buffer (a
        P-DATA-TF of 16 KiB and the headers around it in one system call, not two per
        PDU); a large body is received in place, after what was read ahead."""
        ahead, pos = self._ahead, self._pos
        have = len(ahead) - pos
        if have >= size:
            self._pos = pos + size
            return ahead[pos : pos + size]
        got = 0
        try:
            if size >= _READ_AHEAD:
                out = bytearray(size)
                out[:have] = ahead[pos:]
                del ahead[:]
                self._pos = got = have
                view = memoryview(out)
                while got < size:
                    got += self._recv(view[got:], deadline)
                return out
            del ahead[:pos]
            self._pos = 0
            while len(ahead) < size:
                count = self._recv(self._scratch, deadline)
                ahead += self._scratch[:count]
        except Silent:
            # Bytes of this PDU were consumed: the stream cannot be read on in step.
            self.desynced = self.desynced or self._midway or got > 0 or len(ahead) > 0
            raise
        self._pos = size
        return ahead[:size]

    def read(self, deadline: float | None, bound: Callable[[int], int]) -> tuple[int, bytearray]:
        """The next PDU as ``(type, body)``, complete before ``deadline`` (monotonic) or
        :class:`Silent`. ``bound(type)`` is the longest body allowed (or raises): it is
        checked before the body's buffer exists."""
        self._midway = False
        head = self._exact(6, deadline)
        length = int.from_bytes(head[2:6], "big")
        limit = bound(head[0])
        if length > limit:
            self.desynced = True  # the body stays unread
            raise Invalid(f"PDU type 0x{head[0]:02X} announces {length} bytes (at most {limit})")
        self._midway = True
        body = self._exact(length, deadline)
        self._midway = False
        return head[0], body

    def readable(self, timeout: float) -> bool:
        """Whether bytes (or the end) wait on the socket, within ``timeout`` seconds:
        a wait that can be given up without losing the place in the stream."""
        if len(self._ahead) > self._pos:
            return True
        try:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        except (OSError, ValueError):  # closed meanwhile: the read will say so
            return True
        return bool(ready)

    def send(self, data: bytes | bytearray) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Closed(f"connection lost ({type(exc).__name__})") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


#: A complete DIMSE message: context ID, command fields, command bytes, data set fragments.
Message = tuple[int, dict[int, bytes], bytes, list[memoryview] | None]
