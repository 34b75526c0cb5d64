"""C-GET and C-MOVE off the socket: the retrieve requests that move every instance.

pynetdicom spent about 2.9 ms of CPU on each 0.5 MB instance a C-GET delivered
(250 CT instances: 0.72 s of CPU; this module: 0.07 s; see :mod:`.upperlayer` for why),
and about 1 ms on each pending C-MOVE response (a response per instance moved). For
these two exchanges the workbench is the requestor itself, on one thread, no pool:

* associate, proposing what pynetdicom would (the chosen Q/R model; for C-GET also the
  storage classes with the SCP role; tests compare the bytes); the PDUs are encoded
  and read here, because pynetdicom's PDU classes spend some 25 ms on 121 contexts, in
  every worker of every transfer (a rejection is still read by pynetdicom);
* send the C-GET-RQ, then for each C-STORE-RQ sub-operation answer the C-STORE-RSP as
  soon as the data set is in (so the server sends the next instance while the caller
  works on this one) and yield the instance with its file meta;
* the final C-GET-RSP ends the stream (returned, decoded, as the generator's value);
  release. Closing the generator early sends a C-CANCEL-RQ, refuses what still arrives
  and releases once the server has answered;
* C-MOVE sends its request and reads the responses, decoding only the final one.

No asynchronous operations, no extended negotiation.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
from collections.abc import Generator, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from pydicom import Dataset
from pynetdicom import DEFAULT_TRANSFER_SYNTAXES
from pynetdicom.dsutils import decode, encode
from pynetdicom.pdu import A_ASSOCIATE_RJ

from ..errors import AssociationRejected, InputError, NodeError, NodeTimeout, NotSupported
from . import upperlayer as ul
from .association import GET_STORAGE_SOP_CLASSES

if TYPE_CHECKING:
    from .dimse import DimseNode

__all__ = ["move", "receive"]

log = logging.getLogger(__name__)

_GET, _MOVE = "C-GET", "C-MOVE"
_PENDING = (0xFF00, 0xFF01)
_REFUSED = 0xA700  # out of resources: what is left after a cancel
_SOP_CLASS_NOT_SUPPORTED = 0x0122  # arrived on a context we did not accept
_MESSAGE_ID = 1


@lru_cache(maxsize=16)
def _request(
    calling: str, called: str, model: str, storage: bool = True
) -> tuple[bytes, tuple[str, ...]]:
    """The A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) and the abstract syntax of each context ID.

    Encoded here, in the order pynetdicom encodes it: its PDU classes took 13 ms for
    121 contexts, in every worker process of every transfer. ``storage``: propose the
    storage classes with the SCP role too (C-GET).
    """
    stored = GET_STORAGE_SOP_CLASSES if storage else ()
    syntaxes = (model, *stored)
    items = [ul.item(0x10, ul.APPLICATION_CONTEXT.encode("ascii"))]
    for index, uid in enumerate(syntaxes):
        offered = [ul.IMPLICIT, ul.EXPLICIT] if index == 0 else DEFAULT_TRANSFER_SYNTAXES
        sub_items = ul.item(0x30, uid.encode("ascii")) + b"".join(
            ul.item(0x40, syntax.encode("ascii")) for syntax in offered
        )
        items.append(ul.item(0x20, struct.pack(">B3x", 2 * index + 1) + sub_items))
    user = [
        ul.item(0x51, struct.pack(">I", 0)),  # no limit: fewer, larger reads
        ul.item(0x52, ul.IMPLEMENTATION_UID.encode("ascii")),
        ul.item(0x55, ul.IMPLEMENTATION_VERSION.encode("ascii")),
    ]
    for uid in stored:  # we take the SCP role: the server C-STOREs to us
        raw = uid.encode("ascii")
        user.append(ul.item(0x54, struct.pack(">H", len(raw)) + raw + b"\x00\x01"))
    items.append(ul.item(0x50, b"".join(user)))
    body = struct.pack(">H2x", 1) + ul.ae_field(called) + ul.ae_field(calling) + bytes(32)
    body += b"".join(items)
    return struct.pack(">BxI", ul.ASSOCIATE_RQ, len(body)) + body, syntaxes


def _accepted(body: bytes, syntaxes: tuple[str, ...]) -> tuple[dict[int, tuple[str, str]], int]:
    """From an A-ASSOCIATE-AC's body (PS3.8 9.3.3): the accepted contexts as
    ``{ID: (abstract syntax, transfer syntax)}`` and the peer's maximum PDU length."""
    contexts: dict[int, tuple[str, str]] = {}
    peer_max = 0
    # after the protocol version, reserved fields and the echoed AE titles
    for kind, value in ul.items(body, 68):
        if kind == 0x21 and len(value) >= 8 and value[2] == 0 and value[4] == 0x40:
            index = (value[0] - 1) // 2
            if value[0] % 2 and index < len(syntaxes):
                size = int.from_bytes(value[6:8], "big")
                syntax = value[8 : 8 + size].rstrip(b"\x00 ").decode("ascii", "replace")
                contexts[value[0]] = (syntaxes[index], syntax)
        elif kind == 0x50:
            for sub_kind, sub_value in ul.items(value):
                if sub_kind == 0x51 and len(sub_value) == 4:
                    peer_max = int.from_bytes(sub_value, "big")
    return contexts, peer_max


def _associate(
    link: ul.Link, calling: str, called: str, model: str, timeout: float, storage: bool = True
) -> None:
    request, syntaxes = _request(calling, called, model, storage)
    link.send(request)
    try:
        kind, body = link.read(timeout)
    except NodeTimeout:
        raise NodeTimeout(
            link.node, link.operation, f"no association within {timeout:g} s"
        ) from None
    except ul.Closed as exc:
        raise AssociationRejected(
            link.node, link.operation, f"association aborted during negotiation: {exc}"
        ) from None
    if kind == ul.ASSOCIATE_RJ:
        rejection = A_ASSOCIATE_RJ()
        rejection.decode(struct.pack(">BxI", kind, len(body)) + bytes(body))
        raise AssociationRejected(
            link.node, link.operation, f"association rejected by {called}: {rejection.reason_str}"
        )
    if kind != ul.ASSOCIATE_AC:
        raise AssociationRejected(
            link.node, link.operation, f"association refused (PDU type 0x{kind:02X})"
        )
    link.contexts, link.peer_max = _accepted(bytes(body), syntaxes)


def _request_message(
    field: int, model: str, identifier: Dataset, syntax: str, *extra: tuple[int, bytes]
) -> tuple[bytes, bytes]:
    """A C-GET-RQ or C-MOVE-RQ: its command set, and its identifier encoded in ``syntax``."""
    encoded = encode(identifier, syntax == ul.IMPLICIT, True)
    if encoded is None:
        raise InputError("the retrieve identifier cannot be encoded")
    command = ul.command(
        (ul.SOP_CLASS, model.encode("ascii")),
        (ul.FIELD, ul.us(field)),
        (ul.MESSAGE_ID, ul.us(_MESSAGE_ID)),
        *extra,
        (ul.PRIORITY, ul.us(0)),
        (ul.DATASET_TYPE, ul.us(0x0001)),
    )
    return command, encoded


@contextlib.contextmanager
def _exchange(node: DimseNode, link: ul.Link, operation: str) -> Iterator[list[bool]]:
    """Around a request and its responses: the body sets the yielded flag once the
    exchange ended in step with the peer, and the association is released; otherwise
    (an error, a dead link) it is aborted. A dead link is the node's error."""
    ended = [False]
    try:
        yield ended
    except ul.Closed as exc:
        raise AssociationRejected(node.name, operation, str(exc)) from None
    finally:
        if ended[0]:
            link.release(node.settings.network_timeout)
        else:
            link.abort()


def _final(command: bytes, operation: str) -> Dataset:
    """The final response's command set, decoded (its status, counts and comment)."""
    final = decode(io.BytesIO(command), True, True)
    if final is None:
        raise ul.Closed(f"the final {operation} response cannot be decoded")
    return final


def _cancel_request(model: str) -> bytes:
    return ul.command(
        (ul.SOP_CLASS, model.encode("ascii")),
        (ul.FIELD, ul.us(ul.C_CANCEL_RQ)),
        (ul.RESPONDING_TO, ul.us(_MESSAGE_ID)),
        (ul.DATASET_TYPE, ul.us(ul.NO_DATASET)),
    )


def _open(
    node: DimseNode, operation: str, model: str, root: str, *, storage: bool
) -> tuple[ul.Link, int]:
    """An association for ``model``, and the ID of its accepted context."""
    settings = node.settings
    link = ul.Link.connect(
        node.spec.host, node.spec.port, node.name, operation, settings.connect_timeout
    )
    try:
        _associate(
            link, node.calling_ae, node.spec.ae_title, model, settings.connect_timeout, storage
        )
    except BaseException:
        link.abort()
        raise
    context = next((cid for cid, (uid, _) in link.contexts.items() if uid == model), 0)
    if not context:
        link.release(settings.network_timeout)
        raise NotSupported(node.name, operation, f"{root}-root {operation} not accepted")
    return link, context


def receive(
    node: DimseNode, identifier: Dataset, model: str, root: str
) -> Generator[bytes, None, Dataset]:
    """C-GET ``identifier`` under ``model``; yield each instance's Part-10 bytes.

    Returns the final C-GET-RSP command as a Dataset (Status, the sub-operation counts,
    ErrorComment) for the caller to judge. Network failures raise the workbench's node
    errors; ``root`` names the model in the error when the server does not accept it.
    """
    link, get_context = _open(node, _GET, model, root, storage=True)
    with _exchange(node, link, _GET) as ended:
        syntax = link.contexts[get_context][1]
        link.message(get_context, *_request_message(ul.C_GET_RQ, model, identifier, syntax))
        messages = ul.messages(link, node.settings.dimse_timeout)
        for context, fields, command, parts in messages:
            if ul.number(fields, ul.FIELD) == ul.C_GET_RSP:
                if ul.number(fields, ul.STATUS) in _PENDING:
                    continue
                final = _final(command, _GET)
                ended[0] = True
                return final
            taken = _answer(link, context, fields, parts, refuse=False)
            if taken is None or parts is None:
                continue
            try:
                yield b"".join([ul.file_meta(fields, taken), *parts])
            except GeneratorExit:
                ended[0] = _cancel(link, messages, get_context, model)
                raise
        raise ul.Closed("the peer released the association before the C-GET ended")


def _answer(
    link: ul.Link,
    context: int,
    fields: dict[int, bytes],
    parts: list[memoryview] | None,
    refuse: bool,
) -> str | None:
    """Answer a C-STORE sub-operation; the transfer syntax if the instance is taken."""
    field = ul.number(fields, ul.FIELD)
    if field != ul.C_STORE_RQ or parts is None:
        raise ul.Closed(f"unexpected DIMSE message 0x{field & 0xFFFF:04X}")
    accepted = link.contexts.get(context)
    status = _SOP_CLASS_NOT_SUPPORTED if accepted is None else _REFUSED if refuse else 0
    link.message(context, ul.store_response(fields, status))
    return None if accepted is None or status else accepted[1]


def _cancel(link: ul.Link, messages: Iterator[ul.Message], get_context: int, model: str) -> bool:
    """C-CANCEL, refuse what is still on its way, wait for the final response.

    True when the server answered (the association can be released), False when it
    failed to (the caller aborts instead). Errors stay here: the consumer is closing.
    """
    try:
        link.message(get_context, _cancel_request(model))
        for context, fields, _command, parts in messages:
            if ul.number(fields, ul.FIELD) == ul.C_GET_RSP:
                if ul.number(fields, ul.STATUS) not in _PENDING:
                    return True
                continue
            _answer(link, context, fields, parts, refuse=True)
    except (NodeError, ul.Closed):
        log.debug("a cancelled C-GET did not end cleanly; aborting")
    return False


def move(node: DimseNode, identifier: Dataset, model: str, root: str, destination: str) -> Dataset:
    """C-MOVE ``identifier`` under ``model`` to the AE title ``destination``.

    Returns the final C-MOVE-RSP command as a Dataset, for the caller to judge.
    """
    link, context = _open(node, _MOVE, model, root, storage=False)
    with _exchange(node, link, _MOVE) as ended:
        target = (ul.MOVE_DESTINATION, ul.ae_field(destination))
        syntax = link.contexts[context][1]
        link.message(context, *_request_message(ul.C_MOVE_RQ, model, identifier, syntax, target))
        for _context, fields, response, _parts in ul.messages(link, node.settings.dimse_timeout):
            if ul.number(fields, ul.FIELD) != ul.C_MOVE_RSP:
                raise ul.Closed(f"unexpected DIMSE message 0x{ul.number(fields, ul.FIELD):04X}")
            if ul.number(fields, ul.STATUS) in _PENDING:
                continue
            final = _final(response, _MOVE)
            ended[0] = True
            return final
        raise ul.Closed("the peer released the association before the C-MOVE ended")
