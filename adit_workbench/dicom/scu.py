"""C-GET and C-MOVE off the socket: the retrieve requests that move every instance.

pynetdicom spent about 2.9 ms of CPU on each 0.5 MB instance a C-GET delivered
(250 CT instances: 0.72 s of CPU; this module: 0.07 s; see :mod:`.upperlayer` for why),
and about 1 ms on each pending C-MOVE response (a response per instance moved). For
these two exchanges the workbench is the requestor itself, on one thread, no pool,
through the state machine of :mod:`.fsm`:

* associate, proposing the Q/R model and, for C-GET, the storage classes with the SCP
  role: the classes the study holds when the caller knows them (then one context per
  transfer syntax, as far as 128 contexts allow, so that a PACS that does not
  transcode finds a context for each instance as it is stored), otherwise
  pynetdicom's 120 common classes with every syntax we know in one context each. The
  role-selection answers are read: a C-STORE on a context whose SCP role the peer did
  not grant is refused;
* send the C-GET-RQ, then for each C-STORE-RQ sub-operation answer the C-STORE-RSP as
  soon as the data set is in (so the server sends the next instance while the caller
  works on this one) and yield the instance, as sent, with its file meta;
* the final C-GET-RSP ends the stream (returned, decoded, as the generator's value);
  release. Closing the generator early sends a C-CANCEL-RQ, refuses what still arrives
  and releases once the server has answered, or aborts after half a second;
* C-MOVE sends its request and reads the responses, decoding only the final one; a
  ``cancel`` event set meanwhile sends a C-CANCEL the same way.

No asynchronous operations, no extended negotiation.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Generator, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

from pydicom import Dataset
from pynetdicom.dsutils import decode, encode

from ..errors import AssociationRejected, InputError, NodeError, NodeTimeout, NotSupported
from . import fsm, pdus
from . import upperlayer as ul
from .association import GET_STORAGE_SOP_CLASSES

if TYPE_CHECKING:
    from .dimse import DimseNode

__all__ = ["MAX_STORAGE_CLASSES", "move", "receive"]

log = logging.getLogger(__name__)

_GET, _MOVE = "C-GET", "C-MOVE"
_PENDING = (0xFF00, 0xFF01)
_REFUSED = 0xA700  # out of resources: what is left after a cancel
_SOP_CLASS_NOT_SUPPORTED = 0x0122  # arrived on a context we did not accept
_MESSAGE_ID = 1
#: Seconds a peer has to end an exchange after our C-CANCEL, before the abort.
CANCEL_GRACE = 0.5
#: Our ARTIM: how long we wait for the peer to close after an abort or a release.
_ARTIM = 0.4
_MAX_CONTEXTS = 128
#: Storage classes one C-GET association can propose (the Q/R model takes a context);
#: a study with more is fetched over several (:mod:`.cget_split`).
MAX_STORAGE_CLASSES = _MAX_CONTEXTS - 1

Proposal = tuple[tuple[int, str, list[str]], ...]


def _storage_contexts(classes: tuple[str, ...], first_id: int) -> list[tuple[int, str, list[str]]]:
    """Contexts for the storage classes: one per transfer syntax as far as the budget
    allows (a non-transcoding SCP needs the instance's own), the rest together."""
    budget = _MAX_CONTEXTS - (first_id - 1) // 2
    per_class = max(1, min(1 + len(pdus.COMPRESSED_SYNTAXES), budget // max(1, len(classes))))
    groups: list[list[str]] = [list(pdus.UNCOMPRESSED_SYNTAXES)]
    compressed = list(pdus.COMPRESSED_SYNTAXES)
    if per_class == 1:
        groups = [list(pdus.ALL_SYNTAXES)]
    else:
        groups += [[syntax] for syntax in compressed[: per_class - 2]]
        groups.append(compressed[per_class - 2 :])
    contexts = []
    context_id = first_id
    for uid in classes:
        for group in groups:
            if group:
                contexts.append((context_id, uid, group))
                context_id += 2
    return contexts


@lru_cache(maxsize=64)
def _request(
    calling: str, called: str, model: str, classes: tuple[str, ...] | None, storage: bool = True
) -> tuple[bytes, Proposal]:
    """The A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) and the contexts it proposes.

    ``storage``: propose storage classes with the SCP role too (C-GET): ``classes``,
    or pynetdicom's common ones when None. At most 128 contexts.
    """
    contexts = [(1, model, [ul.EXPLICIT, ul.IMPLICIT])]
    stored: tuple[str, ...] = ()
    if storage:
        stored = tuple(dict.fromkeys(classes or GET_STORAGE_SOP_CLASSES))[:MAX_STORAGE_CLASSES]
        contexts += _storage_contexts(stored, 3)
    roles = [(uid, False, True) for uid in stored]  # we take the SCP role: they C-STORE to us
    pdu = pdus.request_pdu(called, calling, contexts, fsm.MAX_PDU, roles)
    return pdu, tuple(contexts)


def _open(
    node: DimseNode,
    operation: str,
    model: str,
    root: str,
    *,
    storage: bool,
    classes: tuple[str, ...] | None = None,
) -> tuple[fsm.Machine, int, set[int]]:
    """An association for ``model``: the machine, the ID of the model's context and
    the IDs of the contexts the peer may C-STORE on."""
    settings = node.settings
    link = ul.Link.connect(
        node.spec.host, node.spec.port, node.name, operation, settings.connect_timeout
    )
    machine = fsm.Machine(link, requestor=True, artim=_ARTIM)
    pdu, proposed = _request(node.calling_ae, node.spec.ae_title, model, classes, storage)
    called = node.spec.ae_title
    try:
        accept = machine.request_association(pdu, settings.connect_timeout)
    except fsm.Rejected as exc:
        raise AssociationRejected(
            node.name, operation, f"association rejected by {called}: {exc}"
        ) from None
    except ul.Silent:
        machine.abort("no answer to the association request")
        raise NodeTimeout(
            node.name, operation, f"no association within {settings.connect_timeout:g} s"
        ) from None
    except ul.Closed as exc:
        raise AssociationRejected(
            node.name, operation, f"association aborted during negotiation: {exc}"
        ) from None
    except BaseException:
        machine.abort("")
        raise
    if accept.application_context != pdus.APPLICATION_CONTEXT:
        machine.abort("the peer answered with another application context")
        raise AssociationRejected(node.name, operation, "the peer is not a DICOM application")
    storable: set[int] = set()
    for context_id, abstract, offered in proposed:
        result, syntax = accept.results.get(context_id, (pdus.NO_REASON, ""))
        if result != pdus.ACCEPTED or syntax not in offered:
            continue  # refused, or a syntax we never offered: unusable
        machine.contexts[context_id] = (abstract, syntax)
        if abstract != model and accept.roles.get(abstract, (False, False))[1]:
            storable.add(context_id)
    context = next((cid for cid, (uid, _) in machine.contexts.items() if uid == model), 0)
    if not context:
        machine.release(settings.network_timeout)
        raise NotSupported(node.name, operation, f"{root}-root {operation} not accepted")
    return machine, context, storable


def _request_message(
    field: int,
    model: str,
    identifier: Dataset,
    syntax: str,
    *extra: tuple[int, bytes],
    message_id: int = _MESSAGE_ID,
) -> tuple[bytes, bytes]:
    """A C-GET-RQ or C-MOVE-RQ: its command set, and its identifier encoded in ``syntax``."""
    encoded = encode(identifier, syntax == ul.IMPLICIT, True)
    if encoded is None:
        raise InputError("the retrieve identifier cannot be encoded")
    command = ul.command(
        (ul.SOP_CLASS, model.encode("ascii")),
        (ul.FIELD, ul.us(field)),
        (ul.MESSAGE_ID, ul.us(message_id)),
        *extra,
        (ul.PRIORITY, ul.us(0)),
        (ul.DATASET_TYPE, ul.us(0x0001)),
    )
    return command, encoded


@contextlib.contextmanager
def _exchange(node: DimseNode, machine: fsm.Machine, operation: str) -> Iterator[list[float]]:
    """Around a request and its responses: the body sets the yielded value to the
    seconds a release may take once the exchange ended in step with the peer;
    otherwise (an error, a dead link) the association is aborted. A dead link is the
    node's error."""
    ended = [0.0]
    try:
        yield ended
    except ul.Silent:
        raise NodeTimeout(
            node.name, operation, f"no response within {node.settings.dimse_timeout:g} s"
        ) from None
    except ul.Closed as exc:
        raise AssociationRejected(node.name, operation, str(exc)) from None
    finally:
        if ended[0]:
            machine.release(ended[0])
        else:
            machine.abort("")


def _final(command: bytes, operation: str) -> Dataset:
    """The final response's command set, decoded (its status, counts and comment)."""
    final = decode(io.BytesIO(command), True, True)
    if final is None:
        raise ul.Closed(f"the final {operation} response cannot be decoded")
    return final


def _cancel_request(model: str, message_id: int = _MESSAGE_ID) -> bytes:
    return ul.command(
        (ul.SOP_CLASS, model.encode("ascii")),
        (ul.FIELD, ul.us(ul.C_CANCEL_RQ)),
        (ul.RESPONDING_TO, ul.us(message_id)),
        (ul.DATASET_TYPE, ul.us(ul.NO_DATASET)),
    )


def receive(
    node: DimseNode,
    identifier: Dataset,
    model: str,
    root: str,
    classes: tuple[str, ...] | None = None,
) -> Generator[bytes, None, Dataset]:
    """C-GET ``identifier`` under ``model``; yield each instance's Part-10 bytes.

    Returns the final C-GET-RSP command as a Dataset (Status, the sub-operation counts,
    ErrorComment) for the caller to judge. Network failures raise the workbench's node
    errors; ``root`` names the model in the error when the server does not accept it.
    ``classes``: the storage SOP classes to propose (those of the study).
    """
    machine, get_context, storable = _open(node, _GET, model, root, storage=True, classes=classes)
    with _exchange(node, machine, _GET) as ended:
        syntax = machine.contexts[get_context][1]
        machine.send_message(get_context, *_request_message(ul.C_GET_RQ, model, identifier, syntax))
        timeout = node.settings.dimse_timeout
        while (message := machine.next_message(timeout)) is not None:
            context, fields, command, parts = message
            if ul.number(fields, ul.FIELD) == ul.C_GET_RSP:
                if ul.number(fields, ul.STATUS) in _PENDING:
                    continue
                final = _final(command, _GET)
                ended[0] = node.settings.network_timeout
                return final
            taken = _answer(machine, storable, context, fields, parts, refuse=False)
            if taken is None or parts is None:
                continue
            try:
                yield b"".join([ul.file_meta(fields, taken), *parts])
            except GeneratorExit:
                ended[0] = CANCEL_GRACE if _cancel(machine, storable, get_context, model) else 0
                raise
        raise ul.Closed("the peer released the association before the C-GET ended")


def _answer(
    machine: fsm.Machine,
    storable: set[int],
    context: int,
    fields: dict[int, bytes],
    parts: list[memoryview] | None,
    refuse: bool,
) -> str | None:
    """Answer a C-STORE sub-operation; the transfer syntax if the instance is taken."""
    field = ul.number(fields, ul.FIELD)
    if field != ul.C_STORE_RQ or parts is None:
        raise machine.abort(f"unexpected DIMSE message 0x{field & 0xFFFF:04X}")
    accepted = context in storable
    status = _SOP_CLASS_NOT_SUPPORTED if not accepted else _REFUSED if refuse else 0
    machine.send_message(context, ul.store_response(fields, status))
    return None if status else machine.contexts[context][1]


def _cancel(machine: fsm.Machine, storable: set[int], get_context: int, model: str) -> bool:
    """C-CANCEL, refuse what is still on its way, wait for the final response.

    True when the server answered within :data:`CANCEL_GRACE` (the association can be
    released), False when it did not (the caller aborts). Errors stay here: the
    consumer is closing.
    """
    deadline = time.monotonic() + CANCEL_GRACE
    try:
        machine.send_message(get_context, _cancel_request(model))
        while (left := deadline - time.monotonic()) > 0:
            message = machine.next_message(left)
            if message is None:
                return False
            context, fields, _command, parts = message
            if ul.number(fields, ul.FIELD) == ul.C_GET_RSP:
                if ul.number(fields, ul.STATUS) not in _PENDING:
                    return True
                continue
            _answer(machine, storable, context, fields, parts, refuse=True)
    except (NodeError, ul.Closed, ul.Silent):
        pass
    log.debug("a cancelled C-GET did not end in time; aborting")
    return False


def move(
    node: DimseNode,
    identifier: Dataset,
    model: str,
    root: str,
    destination: str,
    cancel: threading.Event | None = None,
    message_id: int = _MESSAGE_ID,
) -> Dataset:
    """C-MOVE ``identifier`` under ``model`` to the AE title ``destination``.

    ``message_id``: the C-MOVE-RQ's Message ID, which the server repeats as Move
    Originator Message ID in each C-STORE it sends (the receiver routes by it).

    Returns the final C-MOVE-RSP command as a Dataset, for the caller to judge. Setting
    ``cancel`` sends a C-CANCEL; a peer that does not end the move within
    :data:`CANCEL_GRACE` is aborted (:class:`~adit_workbench.errors.AssociationRejected`).
    """
    machine, context, _storable = _open(node, _MOVE, model, root, storage=False)
    cancelled: list[float] = []

    def idle() -> None:
        if cancel is None or not cancel.is_set():
            return
        if not cancelled:
            cancelled.append(time.monotonic())
            machine.send_message(context, _cancel_request(model, message_id))
        elif time.monotonic() - cancelled[0] > CANCEL_GRACE:
            raise ul.Closed("the C-MOVE was cancelled and the peer did not stop")

    with _exchange(node, machine, _MOVE) as ended:
        target = (ul.MOVE_DESTINATION, pdus.ae_field(destination))
        syntax = machine.contexts[context][1]
        machine.send_message(
            context,
            *_request_message(
                ul.C_MOVE_RQ, model, identifier, syntax, target, message_id=message_id
            ),
        )
        timeout = node.settings.dimse_timeout
        while (message := machine.next_message(timeout, idle)) is not None:
            _context, fields, response, _parts = message
            if ul.number(fields, ul.FIELD) != ul.C_MOVE_RSP:
                field = ul.number(fields, ul.FIELD) & 0xFFFF
                raise machine.abort(f"unexpected DIMSE message 0x{field:04X}")
            idle()
            if ul.number(fields, ul.STATUS) in _PENDING:
                continue
            final = _final(response, _MOVE)
            ended[0] = CANCEL_GRACE if cancelled else node.settings.network_timeout
            return final
        raise ul.Closed("the peer released the association before the C-MOVE ended")
