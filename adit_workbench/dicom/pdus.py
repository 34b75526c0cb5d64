"""The association PDUs of PS3.8 9.3 read and written, strictly and within bounds.

Both sides of the lean upper layer (:mod:`.scu` as requestor, :mod:`.storescp` as
acceptor) negotiate with these. Parsing never trusts a length: an item that runs past
its PDU, a missing mandatory item or a sub-item of the wrong size raises
:class:`Invalid` with the A-P-ABORT reason to send (PS3.8 9.3.8), before anything is
built from it. The caller has already bounded the PDU's length (:mod:`.fsm`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Invalid",
    "Negotiation",
    "abort_pdu",
    "accept_pdu",
    "parse_accept",
    "parse_request",
    "reject_pdu",
    "request_pdu",
]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
# Ours: a UUID-derived UID (PS3.5 B.2), fixed for the project, and a version name.
IMPLEMENTATION_UID = "2.25.51043915485695238722424685247169743600"
IMPLEMENTATION_VERSION = "ADIT_WB_0.1"

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA = 0x01, 0x02, 0x03, 0x04
RELEASE_RQ, RELEASE_RP, ABORT = 0x05, 0x06, 0x07
PDU_TYPES = frozenset(range(1, 8))

# A-ABORT source and A-P-ABORT reasons (PS3.8 9.3.8)
SERVICE_USER, SERVICE_PROVIDER = 0, 2
NOT_SPECIFIED, UNRECOGNIZED_PDU, UNEXPECTED_PDU = 0, 1, 2
UNRECOGNIZED_PARAMETER, UNEXPECTED_PARAMETER, INVALID_PARAMETER = 4, 5, 6

# A-ASSOCIATE-RJ result, source and reasons (PS3.8 9.3.4)
PERMANENT, TRANSIENT = 1, 2
RJ_USER, RJ_ACSE, RJ_PRESENTATION = 1, 2, 3
RJ_NO_REASON, RJ_CONTEXT_NOT_SUPPORTED, RJ_CALLING_UNKNOWN, RJ_CALLED_UNKNOWN = 1, 2, 3, 7
RJ_PROTOCOL_VERSION = 2  # with RJ_ACSE
RJ_CONGESTION, RJ_LOCAL_LIMIT = 1, 2  # with RJ_PRESENTATION

# Presentation context results in an A-ASSOCIATE-AC (PS3.8 9.3.3.2)
ACCEPTED, USER_REJECTION, NO_REASON, ABSTRACT_NOT_SUPPORTED, SYNTAXES_NOT_SUPPORTED = range(5)

_FIXED = 68  # protocol version, reserved, called AE, calling AE, 32 reserved bytes


class Invalid(Exception):
    """A PDU that breaks PS3.8; ``reason`` is the A-P-ABORT reason that says so."""

    def __init__(self, message: str, reason: int = INVALID_PARAMETER) -> None:
        super().__init__(message)
        self.reason = reason


def item(kind: int, value: bytes) -> bytes:
    """A PDU item or sub-item: type, reserved, 2-byte length, value."""
    if len(value) > 0xFFFF:
        raise ValueError("a PDU item holds at most 65535 bytes")
    return struct.pack(">BxH", kind, len(value)) + value


def items(data: bytes | bytearray, at: int = 0) -> Iterator[tuple[int, bytes]]:
    """The ``(type, value)`` of each item in ``data`` from ``at`` on; Invalid when one
    runs past the end."""
    end = len(data)
    while at < end:
        if at + 4 > end:
            raise Invalid("a truncated item header")
        kind, length = data[at], int.from_bytes(data[at + 2 : at + 4], "big")
        if at + 4 + length > end:
            raise Invalid(f"item 0x{kind:02X} runs past its PDU")
        yield kind, bytes(data[at + 4 : at + 4 + length])
        at += 4 + length


def _text(value: bytes | bytearray) -> str:
    return value.rstrip(b"\x00 ").decode("ascii", "replace")


def ae_field(title: str) -> bytes:
    """An AE title as the 16 bytes of an A-ASSOCIATE PDU."""
    return title.encode("ascii", "replace").ljust(16)[:16]


@dataclass
class Negotiation:
    """What an A-ASSOCIATE-RQ or -AC says.

    ``contexts``: ``(ID, abstract syntax, transfer syntaxes)`` of a request, or
    ``(ID, result, [transfer syntax])`` of an acceptance (the abstract syntax of an AC
    item is the requestor's to remember: it is the result code, as text, here).
    ``roles``: SOP class → ``(SCU role, SCP role)`` from role selection sub-items.
    """

    version: int
    called: str
    calling: str
    application_context: str = ""
    contexts: list[tuple[int, str, list[str]]] = field(default_factory=list)
    results: dict[int, tuple[int, str]] = field(default_factory=dict)
    max_length: int = 0
    implementation_uid: str = ""
    implementation_version: str = ""
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)


def _parse(body: bytes | bytearray, accept: bool) -> Negotiation:
    if len(body) < _FIXED:
        raise Invalid("an A-ASSOCIATE PDU shorter than its fixed fields")
    found = Negotiation(
        version=int.from_bytes(body[0:2], "big"),
        called=_text(body[4:20]),
        calling=_text(body[20:36]),
    )
    user_items = 0
    for kind, value in items(body, _FIXED):
        if kind == 0x10:
            found.application_context = _text(value)
        elif kind == (0x21 if accept else 0x20):
            if len(value) < 4:
                raise Invalid("a presentation context item shorter than 4 bytes")
            subs = list(items(value, 4))
            syntaxes = [_text(v) for k, v in subs if k == 0x40]
            if accept:
                found.results[value[0]] = (value[2], syntaxes[0] if syntaxes else "")
            else:
                abstract = [_text(v) for k, v in subs if k == 0x30]
                if len(abstract) != 1 or not syntaxes:
                    raise Invalid("a presentation context without its abstract or transfer syntax")
                found.contexts.append((value[0], abstract[0], syntaxes))
        elif kind == 0x50:
            user_items += 1
            _user_information(value, found)
        elif kind not in (0x20, 0x21):
            raise Invalid(f"unknown item 0x{kind:02X}", UNRECOGNIZED_PARAMETER)
    if not found.application_context or user_items != 1:
        raise Invalid("no application context or user information item")
    if not accept and not found.contexts:
        raise Invalid("an A-ASSOCIATE-RQ without presentation contexts")
    return found


def _user_information(value: bytes, found: Negotiation) -> None:
    for kind, sub in items(value):
        if kind == 0x51:
            if len(sub) != 4:
                raise Invalid("a maximum length sub-item not 4 bytes long")
            found.max_length = int.from_bytes(sub, "big")
        elif kind == 0x52:
            found.implementation_uid = _text(sub)
        elif kind == 0x55:
            found.implementation_version = _text(sub)
        elif kind == 0x54:
            if len(sub) < 4:
                raise Invalid("a role selection sub-item shorter than 4 bytes")
            size = int.from_bytes(sub[0:2], "big")
            if 2 + size + 2 != len(sub):
                raise Invalid("a role selection sub-item with a wrong UID length")
            found.roles[_text(sub[2 : 2 + size])] = (bool(sub[-2]), bool(sub[-1]))
        # Other sub-items (asynchronous operations, extended negotiation, user identity)
        # are optional: not answering them refuses them (PS3.7 D.3.3).


def parse_request(body: bytes | bytearray) -> Negotiation:
    """An A-ASSOCIATE-RQ's body, checked."""
    return _parse(body, accept=False)


def parse_accept(body: bytes | bytearray) -> Negotiation:
    """An A-ASSOCIATE-AC's body, checked."""
    return _parse(body, accept=True)


def _user(max_length: int, roles: Sequence[tuple[str, bool, bool]]) -> bytes:
    subs = [
        item(0x51, struct.pack(">I", max_length)),
        item(0x52, IMPLEMENTATION_UID.encode("ascii")),
        item(0x55, IMPLEMENTATION_VERSION.encode("ascii")),
    ]
    for uid, scu, scp in roles:
        raw = uid.encode("ascii")
        subs.append(item(0x54, struct.pack(">H", len(raw)) + raw + bytes([scu, scp])))
    return item(0x50, b"".join(subs))


def request_pdu(
    called: str,
    calling: str,
    contexts: list[tuple[int, str, list[str]]],
    max_length: int,
    roles: Sequence[tuple[str, bool, bool]] = (),
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``(ID, abstract syntax, transfer syntaxes)``."""
    parts = [item(0x10, APPLICATION_CONTEXT.encode("ascii"))]
    for context_id, abstract, syntaxes in contexts:
        subs = item(0x30, abstract.encode("ascii")) + b"".join(
            item(0x40, syntax.encode("ascii")) for syntax in syntaxes
        )
        parts.append(item(0x20, struct.pack(">B3x", context_id) + subs))
    parts.append(_user(max_length, roles))
    body = struct.pack(">H2x", 1) + ae_field(called) + ae_field(calling) + bytes(32)
    body += b"".join(parts)
    return struct.pack(">BxI", ASSOCIATE_RQ, len(body)) + body


def accept_pdu(
    request: bytes,
    results: list[tuple[int, int, str]],
    max_length: int,
    roles: Sequence[tuple[str, bool, bool]] = (),
) -> bytes:
    """An A-ASSOCIATE-AC answering the RQ body ``request``: ``(ID, result, syntax)``
    per context, the called and calling AE titles and reserved field echoed."""
    parts = [item(0x10, APPLICATION_CONTEXT.encode("ascii"))]
    for context_id, result, syntax in results:
        # A refused context still carries a transfer syntax sub-item (not significant).
        sub = item(0x40, syntax.encode("ascii"))
        parts.append(item(0x21, struct.pack(">BxBx", context_id, result) + sub))
    parts.append(_user(max_length, roles))
    body = struct.pack(">H2x", 1) + bytes(request[4:_FIXED]) + b"".join(parts)
    return struct.pack(">BxI", ASSOCIATE_AC, len(body)) + body


def reject_pdu(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ PDU."""
    return struct.pack(">BxIxBBB", ASSOCIATE_RJ, 4, result, source, reason)


def abort_pdu(source: int, reason: int = NOT_SPECIFIED) -> bytes:
    """An A-ABORT PDU; the reason is significant only from the service provider."""
    return struct.pack(">BxI2xBB", ABORT, 4, source, reason if source == SERVICE_PROVIDER else 0)


RELEASE_RQ_PDU = struct.pack(">BxI4x", RELEASE_RQ, 4)
RELEASE_RP_PDU = struct.pack(">BxI4x", RELEASE_RP, 4)

_RJ_REASONS = {
    (RJ_USER, RJ_NO_REASON): "no reason given",
    (RJ_USER, RJ_CONTEXT_NOT_SUPPORTED): "application context name not supported",
    (RJ_USER, RJ_CALLING_UNKNOWN): "calling AE title not recognized",
    (RJ_USER, RJ_CALLED_UNKNOWN): "called AE title not recognized",
    (RJ_ACSE, RJ_NO_REASON): "no reason given",
    (RJ_ACSE, RJ_PROTOCOL_VERSION): "protocol version not supported",
    (RJ_PRESENTATION, RJ_CONGESTION): "temporary congestion",
    (RJ_PRESENTATION, RJ_LOCAL_LIMIT): "local limit exceeded",
}


def describe_reject(body: bytes) -> str:
    """An A-ASSOCIATE-RJ's body in words."""
    if len(body) < 4:
        return "rejected (malformed A-ASSOCIATE-RJ)"
    result, source, reason = body[1], body[2], body[3]
    kind = {PERMANENT: "permanent", TRANSIENT: "transient"}.get(result, f"result {result}")
    text = _RJ_REASONS.get((source, reason), f"source {source}, reason {reason}")
    return f"{text} ({kind})"


def describe_abort(body: bytes) -> str:
    """An A-ABORT's body in words."""
    if len(body) < 4:
        return "aborted (malformed A-ABORT)"
    source, reason = body[2], body[3]
    if source != SERVICE_PROVIDER:
        return "aborted by the peer"
    words = {
        UNRECOGNIZED_PDU: "unrecognized PDU",
        UNEXPECTED_PDU: "unexpected PDU",
        UNRECOGNIZED_PARAMETER: "unrecognized PDU parameter",
        UNEXPECTED_PARAMETER: "unexpected PDU parameter",
        INVALID_PARAMETER: "invalid PDU parameter value",
    }.get(reason, "no reason given")
    return f"aborted by the peer's upper layer: {words}"


# -- transfer syntaxes -----------------------------------------------------------------
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
#: Proposed and accepted next to each other; received bytes are kept as sent, so every
#: one of them only needs a name in the file meta, never a codec.
UNCOMPRESSED_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_LE,
    IMPLICIT_LE,
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian (retired, still sent by old modalities)
)
COMPRESSED_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction (SV1)
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 main profile
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265
)
ALL_SYNTAXES: tuple[str, ...] = UNCOMPRESSED_SYNTAXES + COMPRESSED_SYNTAXES
