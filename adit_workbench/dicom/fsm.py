"""The association state machine of PS3.8 9.2, as a table, for the lean upper layer.

:data:`TABLE` is PS3.8 Table 9-10: ``(state, event) -> action``; each action (PS3.8
Tables 9-6 to 9-9) is a method of :class:`Machine` that returns the next state. A pair
missing from the table is a local call the standard does not allow in that state (our
bug, raised); every PDU that can arrive has an entry, so whatever a peer sends lands
on a defined action, usually an A-P-ABORT.

What the table alone does not say, and this module adds:

* every PDU is read whole within one deadline (a peer trickling bytes is cut off) and
  its announced length is checked against a bound before a byte of it is allocated:
  our maximum for P-DATA-TF, :data:`NEGOTIATION_CAP` for A-ASSOCIATE PDUs, 4 for the
  others (:meth:`Machine._bound`);
* the ARTIM timer bounds Sta2 (awaiting the A-ASSOCIATE-RQ) and Sta13 (awaiting the
  close), so a silent or slow peer frees its slot;
* P-DATA-TF PDUs are checked before they are indicated: PDV lengths within the PDU,
  only accepted presentation context IDs, no reserved message control bits
  (:func:`pdvs`); DIMSE messages are assembled in :meth:`Machine.messages`, which
  aborts a data set without its command, a command whose data set never came, and
  command sets or messages above their bounds.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from enum import IntEnum

from . import pdus
from . import upperlayer as ul
from .pdus import Invalid, Negotiation

__all__ = ["TABLE", "Event", "Machine", "State", "pdvs"]

log = logging.getLogger(__name__)

#: Largest A-ASSOCIATE-RQ/-AC read: 128 contexts with 30 transfer syntaxes each fit.
NEGOTIATION_CAP = 1 << 18
#: Our maximum P-DATA-TF length (announced): a 0.5 MB instance in one PDU.
MAX_PDU = 1 << 20
#: Largest command set (group 0000) accepted; real ones are a few hundred bytes.
COMMAND_CAP = 1 << 16
#: Largest data set held for one DIMSE message unless the caller says otherwise.
MAX_MESSAGE = 1 << 31


class State(IntEnum):
    """PS3.8 Table 9-1."""

    STA1 = 1  # idle
    STA2 = 2  # transport open, awaiting A-ASSOCIATE-RQ PDU
    STA3 = 3  # awaiting local A-ASSOCIATE response primitive
    STA4 = 4  # awaiting transport connection opening to complete
    STA5 = 5  # awaiting A-ASSOCIATE-AC or -RJ PDU
    STA6 = 6  # association established, ready for data transfer
    STA7 = 7  # awaiting A-RELEASE-RP PDU
    STA8 = 8  # awaiting local A-RELEASE response primitive
    STA9 = 9  # release collision, requestor: awaiting local A-RELEASE response
    STA10 = 10  # release collision, acceptor: awaiting A-RELEASE-RP PDU
    STA11 = 11  # release collision, requestor: awaiting A-RELEASE-RP PDU
    STA12 = 12  # release collision, acceptor: awaiting local A-RELEASE response
    STA13 = 13  # awaiting transport connection close


class Event(IntEnum):
    """PS3.8 Table 9-2."""

    EVT1 = 1  # A-ASSOCIATE request (local user)
    EVT2 = 2  # transport connection confirm
    EVT3 = 3  # A-ASSOCIATE-AC PDU received
    EVT4 = 4  # A-ASSOCIATE-RJ PDU received
    EVT5 = 5  # transport connection indication
    EVT6 = 6  # A-ASSOCIATE-RQ PDU received
    EVT7 = 7  # A-ASSOCIATE response primitive (accept)
    EVT8 = 8  # A-ASSOCIATE response primitive (reject)
    EVT9 = 9  # P-DATA request primitive
    EVT10 = 10  # P-DATA-TF PDU received
    EVT11 = 11  # A-RELEASE request primitive
    EVT12 = 12  # A-RELEASE-RQ PDU received
    EVT13 = 13  # A-RELEASE-RP PDU received
    EVT14 = 14  # A-RELEASE response primitive
    EVT15 = 15  # A-ABORT request primitive
    EVT16 = 16  # A-ABORT PDU received
    EVT17 = 17  # transport connection closed
    EVT18 = 18  # ARTIM timer expired
    EVT19 = 19  # unrecognized or invalid PDU received


S = State
_MIDDLE = tuple(State(n) for n in range(3, 13))  # Sta3..Sta12
_OPEN = tuple(s for s in _MIDDLE if s is not S.STA4)
# PS3.8 Table 9-10, one row per event.
_ROWS: dict[Event, list[tuple[tuple[State, ...], str]]] = {
    Event.EVT1: [((S.STA1,), "AE-1")],
    Event.EVT2: [((S.STA4,), "AE-2")],
    Event.EVT3: [((S.STA2,), "AA-1"), (_OPEN, "AA-8"), ((S.STA5,), "AE-3"), ((S.STA13,), "AA-6")],
    Event.EVT4: [((S.STA2,), "AA-1"), (_OPEN, "AA-8"), ((S.STA5,), "AE-4"), ((S.STA13,), "AA-6")],
    Event.EVT5: [((S.STA1,), "AE-5")],
    Event.EVT6: [((S.STA2,), "AE-6"), (_OPEN, "AA-8"), ((S.STA13,), "AA-7")],
    Event.EVT7: [((S.STA3,), "AE-7")],
    Event.EVT8: [((S.STA3,), "AE-8")],
    Event.EVT9: [((S.STA6,), "DT-1"), ((S.STA8,), "AR-7")],
    Event.EVT10: [
        ((S.STA2,), "AA-1"),
        (_OPEN, "AA-8"),
        ((S.STA6,), "DT-2"),
        ((S.STA7,), "AR-6"),
        ((S.STA13,), "AA-6"),
    ],
    Event.EVT11: [((S.STA6,), "AR-1")],
    Event.EVT12: [
        ((S.STA2,), "AA-1"),
        (_OPEN, "AA-8"),
        ((S.STA6,), "AR-2"),
        ((S.STA7,), "AR-8"),
        ((S.STA13,), "AA-6"),
    ],
    Event.EVT13: [
        ((S.STA2,), "AA-1"),
        (_OPEN, "AA-8"),
        ((S.STA7, S.STA11), "AR-3"),
        ((S.STA10,), "AR-10"),
        ((S.STA13,), "AA-6"),
    ],
    Event.EVT14: [((S.STA8, S.STA12), "AR-4"), ((S.STA9,), "AR-9")],
    Event.EVT15: [((S.STA4,), "AA-2"), (_OPEN, "AA-1")],
    Event.EVT16: [((S.STA2, S.STA13), "AA-2"), (_OPEN, "AA-3")],
    Event.EVT17: [((S.STA2,), "AA-5"), (_MIDDLE, "AA-4"), ((S.STA13,), "AR-5")],
    Event.EVT18: [((S.STA2, S.STA13), "AA-2")],
    Event.EVT19: [((S.STA2,), "AA-1"), (_OPEN, "AA-8"), ((S.STA13,), "AA-7")],
}
#: ``(state, event) -> action``; a later cell of a row overrides an earlier span.
TABLE: dict[tuple[State, Event], str] = {
    (state, event): action
    for event, row in _ROWS.items()
    for states, action in row
    for state in states
}

#: action name -> method name ("AE-1" -> "_ae_1"), computed once: fire() runs per PDU
_METHODS = {action: "_" + action.replace("-", "_").lower() for action in set(TABLE.values())}

_PDU_EVENTS = {
    pdus.ASSOCIATE_RQ: Event.EVT6,
    pdus.ASSOCIATE_AC: Event.EVT3,
    pdus.ASSOCIATE_RJ: Event.EVT4,
    pdus.P_DATA: Event.EVT10,
    pdus.RELEASE_RQ: Event.EVT12,
    pdus.RELEASE_RP: Event.EVT13,
    pdus.ABORT: Event.EVT16,
}

#: A presentation data value: context ID, message control header, fragment.
PDV = tuple[int, int, memoryview]


def pdvs(body: bytearray, contexts: dict[int, tuple[str, str]]) -> list[PDV]:
    """The PDV items of a P-DATA-TF body, checked (PS3.8 9.3.5, E.2)."""
    found: list[PDV] = []
    view = memoryview(body)
    at, end = 0, len(body)
    if end < 6:
        raise Invalid("a P-DATA-TF PDU without a PDV item")
    while at < end:
        if at + 6 > end:
            raise Invalid("a truncated PDV item")
        length = int.from_bytes(body[at : at + 4], "big")
        if length < 2 or at + 4 + length > end:
            raise Invalid("a PDV item longer than its PDU")
        context, control = body[at + 4], body[at + 5]
        if context not in contexts:
            raise Invalid(f"a PDV on presentation context {context}, which was not accepted")
        if control & 0xFC:
            raise Invalid("a PDV with reserved message control bits set")
        found.append((context, control, view[at + 6 : at + 4 + length]))
        at += 4 + length
    return found


class Machine:
    """One association's state machine over a :class:`~.upperlayer.Link`.

    ``requestor``: we asked for the association (SCU) rather than accepted it.
    ``artim``: seconds for the ARTIM timer (Sta2 and Sta13). ``max_receive``: the
    P-DATA-TF length we announce and enforce.
    """

    def __init__(
        self,
        link: ul.Link,
        *,
        requestor: bool,
        artim: float,
        max_receive: int = MAX_PDU,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.link = link
        self.requestor = requestor
        self.artim = artim
        self.max_receive = max_receive
        self.max_message = max_message
        self.state = State.STA1
        #: context ID -> (abstract syntax, transfer syntax), accepted ones only
        self.contexts: dict[int, tuple[str, str]] = {}
        #: the peer's maximum P-DATA-TF length (0: no limit)
        self.peer_max = 0
        self.request: Negotiation | None = None
        self.accept: Negotiation | None = None
        #: why the association ended, once it did abnormally
        self.ended = ""
        #: the last actions run, for diagnosis and tests
        self.actions: deque[str] = deque(maxlen=32)
        self._artim_deadline: float | None = None
        self._pdu: bytes | bytearray = b""
        self._reason = 0
        self._pdvs: list[PDV] = []
        # DIMSE message assembly (next_message)
        self._queue: deque[PDV] = deque()
        self._command: list[memoryview] = []
        self._data: list[memoryview] = []
        self._sizes = [0, 0]
        self._pending: tuple[int, dict[int, bytes], bytes] | None = None

    # -- the table -----------------------------------------------------------------
    def fire(self, event: Event, pdu: bytes | bytearray = b"", reason: int = 0) -> None:
        """Run the action the table names for ``event`` in the current state."""
        action = TABLE.get((self.state, event))
        if action is None:
            raise RuntimeError(f"{event.name} is not allowed in {self.state.name}")
        self._pdu, self._reason = pdu, reason
        self.actions.append(action)
        method = getattr(self, _METHODS[action])
        try:
            self.state = method()
        except ul.Closed as exc:  # the transport died under a send
            self.link.close()
            self.state = State.STA1
            self.ended = self.ended or str(exc)
            raise

    def _start_artim(self) -> None:
        self._artim_deadline = time.monotonic() + self.artim

    def _stop_artim(self) -> None:
        self._artim_deadline = None

    def _abort_pdu(self, source: int) -> None:
        self.link.send(pdus.abort_pdu(source, self._reason))
        self._start_artim()

    # Association establishment (PS3.8 Table 9-6)
    def _ae_1(self) -> State:
        return State.STA4  # the caller connected the transport (Link.connect)

    def _ae_2(self) -> State:
        self.link.send(self._pdu)
        return State.STA5

    def _ae_3(self) -> State:
        return State.STA6

    def _ae_4(self) -> State:
        self.ended = f"association rejected: {pdus.describe_reject(bytes(self._pdu))}"
        self.link.close()
        return State.STA1

    def _ae_5(self) -> State:
        self._start_artim()
        return State.STA2

    def _ae_6(self) -> State:
        self._stop_artim()
        assert self.request is not None
        if not self.request.version & 1:
            self.link.send(pdus.reject_pdu(pdus.PERMANENT, pdus.RJ_ACSE, pdus.RJ_PROTOCOL_VERSION))
            self.ended = "protocol version not supported"
            self._start_artim()
            return State.STA13
        return State.STA3

    def _ae_7(self) -> State:
        self.link.send(self._pdu)
        return State.STA6

    def _ae_8(self) -> State:
        self.link.send(self._pdu)
        self._start_artim()
        return State.STA13

    # Data transfer (Table 9-7)
    def _dt_1(self) -> State:
        self.link.send(self._pdu)
        return State.STA6

    def _dt_2(self) -> State:
        return State.STA6

    # Release (Table 9-8)
    def _ar_1(self) -> State:
        self.link.send(pdus.RELEASE_RQ_PDU)
        return State.STA7

    def _ar_2(self) -> State:
        return State.STA8

    def _ar_3(self) -> State:
        self.link.close()
        return State.STA1

    def _ar_4(self) -> State:
        self.link.send(pdus.RELEASE_RP_PDU)
        self._start_artim()
        return State.STA13

    def _ar_5(self) -> State:
        self._stop_artim()
        self.link.close()
        return State.STA1

    def _ar_6(self) -> State:
        return State.STA7  # data after our release request: indicated, then dropped

    def _ar_7(self) -> State:
        self.link.send(self._pdu)
        return State.STA8

    def _ar_8(self) -> State:
        return State.STA9 if self.requestor else State.STA10

    def _ar_9(self) -> State:
        self.link.send(pdus.RELEASE_RP_PDU)
        return State.STA11

    def _ar_10(self) -> State:
        return State.STA12

    # Abort (Table 9-9)
    def _aa_1(self) -> State:
        # Asked by our user: service-user source. Caused by the peer's PDU in Sta2: the
        # provider detected it, and says why (PS3.8 9.3.8).
        by_peer = self.state is State.STA2
        self._abort_pdu(pdus.SERVICE_PROVIDER if by_peer else pdus.SERVICE_USER)
        if by_peer:
            self.ended = "protocol error before the association request"
        return State.STA13

    def _aa_2(self) -> State:
        self._stop_artim()
        self.link.close()
        if not self.ended:
            self.ended = "ARTIM expired" if self._pdu == b"" else "aborted by the peer"
        return State.STA1

    def _aa_3(self) -> State:
        self.ended = pdus.describe_abort(bytes(self._pdu))
        self.link.close()
        return State.STA1

    def _aa_4(self) -> State:
        self.ended = self.ended or "the connection was closed by the peer"
        self.link.close()
        return State.STA1

    def _aa_5(self) -> State:
        self._stop_artim()
        self.link.close()
        self.ended = self.ended or "the connection was closed before an association request"
        return State.STA1

    def _aa_6(self) -> State:
        return State.STA13

    def _aa_7(self) -> State:
        self._abort_pdu(pdus.SERVICE_PROVIDER)
        return State.STA13

    def _aa_8(self) -> State:
        self._abort_pdu(pdus.SERVICE_PROVIDER)
        return State.STA13

    # -- reading -------------------------------------------------------------------
    def _bound(self, kind: int) -> int:
        """The most bytes a PDU of type ``kind`` may announce here."""
        if kind not in pdus.PDU_TYPES:
            raise Invalid(f"unknown PDU type 0x{kind:02X}", pdus.UNRECOGNIZED_PDU)
        if kind == pdus.P_DATA:
            return self.max_receive
        if kind in (pdus.ASSOCIATE_RQ, pdus.ASSOCIATE_AC):
            return NEGOTIATION_CAP
        return 4

    def receive(self, timeout: float | None) -> Event:
        """Read one PDU (or the lack of one) and run its event; return the event.

        ``timeout``: seconds for the whole PDU to arrive; :class:`~.upperlayer.Silent`
        when it does not (outside the ARTIM states: the caller decides what follows).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._artim_deadline is not None:
            deadline = min(deadline or self._artim_deadline, self._artim_deadline)
        try:
            kind, body = self.link.read(deadline, self._bound)
        except ul.Silent:
            if self._artim_deadline is not None and time.monotonic() >= self._artim_deadline:
                self.fire(Event.EVT18)
                return Event.EVT18
            raise
        except ul.Closed as exc:
            if self.state is not State.STA13:  # there, the close is what we wait for
                self.ended = self.ended or str(exc)
            self.fire(Event.EVT17)
            return Event.EVT17
        except Invalid as exc:
            self.ended = f"protocol error: {exc}"
            self.fire(Event.EVT19, reason=exc.reason)
            return Event.EVT19
        event = _PDU_EVENTS[kind]
        try:
            self._check(event, body)
        except Invalid as exc:
            self.ended = f"protocol error: {exc}"
            self.fire(Event.EVT19, reason=exc.reason)
            return Event.EVT19
        self.fire(event, body, pdus.UNEXPECTED_PDU)
        return event

    def _check(self, event: Event, body: bytearray) -> None:
        """Parse what the next action will use; Invalid for a broken PDU."""
        if event is Event.EVT6 and self.state is State.STA2:
            self.request = pdus.parse_request(body)
        elif event is Event.EVT3 and self.state is State.STA5:
            self.accept = pdus.parse_accept(body)
            self.peer_max = self.accept.max_length
        elif event is Event.EVT10 and self.state in (State.STA6, State.STA7):
            self._pdvs = pdvs(body, self.contexts)

    def linger(self) -> None:
        """In Sta13: wait (ARTIM at most) for the peer to close, then close. A stream
        that lost its place (a PDU cut off) cannot be read on: its timer is up."""
        while self.state is State.STA13:
            if self.link.desynced:
                self.fire(Event.EVT18)
                break
            try:
                self.receive(None)
            except ul.Silent:  # pragma: no cover - the ARTIM deadline ends the read
                self.fire(Event.EVT18)

    def _end(self) -> ul.Closed:
        """The association is over: linger if we must; the error to raise."""
        self.linger()
        return ul.Closed(self.ended or "the association ended")

    # -- the user's primitives -------------------------------------------------------
    def request_association(self, pdu: bytes, timeout: float) -> Negotiation:
        """Requestor: send the A-ASSOCIATE-RQ; the peer's A-ASSOCIATE-AC, or raise
        :class:`Rejected` / :class:`~.upperlayer.Closed`."""
        self.fire(Event.EVT1)
        self.fire(Event.EVT2, pdu)
        deadline = time.monotonic() + timeout
        event = self.receive(max(0.0, deadline - time.monotonic()))
        if self.state is State.STA6:
            assert self.accept is not None
            return self.accept
        if event is Event.EVT4:
            raise Rejected(self.ended)
        raise self._end()

    def wait_request(self) -> Negotiation | None:
        """Acceptor: the A-ASSOCIATE-RQ, read within ARTIM; None when the peer broke
        the protocol, was rejected by the provider, aborted or went silent."""
        self.fire(Event.EVT5)
        self.receive(None)
        if self.state is State.STA3:
            return self.request
        self.linger()
        return None

    def respond(self, pdu: bytes) -> None:
        """Acceptor: send the A-ASSOCIATE-AC or -RJ ``pdu``."""
        accept = pdu[0] == pdus.ASSOCIATE_AC
        self.fire(Event.EVT7 if accept else Event.EVT8, pdu)
        if not accept:
            self.linger()

    def send_message(self, context: int, command_set: bytes, dataset: bytes = b"") -> None:
        """A DIMSE message as P-DATA-TF PDUs within the peer's maximum length."""
        self.fire(Event.EVT9, _p_data(context, command_set, dataset, self.peer_max))

    def _wait(self, timeout: float | None, idle: Callable[[], None]) -> None:
        """Wait for the next PDU's first byte, calling ``idle`` every tenth of a second
        meanwhile; Silent after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.link.readable(0.1):
            idle()
            if deadline is not None and time.monotonic() >= deadline:
                raise ul.Silent("no PDU in time")

    def messages(
        self, timeout: float | None, idle: Callable[[], None] | None = None
    ) -> Iterator[ul.Message]:
        """The DIMSE messages arriving until the peer releases (see :meth:`next_message`)."""
        while (message := self.next_message(timeout, idle)) is not None:
            yield message

    def next_message(
        self, timeout: float | None, idle: Callable[[], None] | None = None
    ) -> ul.Message | None:
        """The next DIMSE message, once its last fragment is in; None when the peer
        released (answered, and the association closed).

        An abort, a lost connection or a protocol error raises
        :class:`~.upperlayer.Closed` (after our A-ABORT, where one is due); ``timeout``
        bounds the wait for each PDU (:class:`~.upperlayer.Silent`). ``idle``: called
        every tenth of a second while waiting between PDUs (it may send a message, as
        a C-CANCEL, or raise to give up). The assembly state lives in the machine, so
        calls with different timeouts continue one stream.
        """
        while True:
            while self._queue:
                message = self._assemble(*self._queue.popleft())
                if message is not None:
                    return message
            if idle is not None:
                self._wait(timeout, idle)
            event = self.receive(timeout)
            if self.state is State.STA8:  # A-RELEASE indication: we always agree
                if self._pending is not None or self._command or self._data:
                    raise self.abort("the peer released in the middle of a message")
                self.fire(Event.EVT14)
                self.linger()
                return None
            if event is not Event.EVT10 or self.state not in (State.STA6, State.STA7):
                raise self._end()
            self._queue.extend(self._pdvs)

    def _assemble(self, context: int, control: int, fragment: memoryview) -> ul.Message | None:
        is_command, last = bool(control & 1), bool(control & 2)
        if is_command:
            if self._pending is not None or self._data:
                raise self.abort("a command arrived before the previous data set")
            self._sizes[0] += len(fragment)
            if self._sizes[0] > COMMAND_CAP:
                raise self.abort("a command set above its bound")
            self._command.append(fragment)
            if not last:
                return None
            raw = b"".join(self._command)
            self._command, self._sizes[0] = [], 0
            try:
                fields = ul.parse_command(raw)
            except ValueError as exc:
                raise self.abort(f"an undecodable command set ({exc})") from None
            if ul.number(fields, ul.DATASET_TYPE) == ul.NO_DATASET:
                return context, fields, raw, None
            self._pending = context, fields, raw
            return None
        if self._pending is None or self._command:
            raise self.abort("a data set arrived without its command")
        if context != self._pending[0]:
            raise self.abort("a data set on another context than its command")
        self._sizes[1] += len(fragment)
        if self._sizes[1] > self.max_message:
            raise self.abort("a data set above its bound")
        self._data.append(fragment)
        if not last:
            return None
        (context, fields, raw), data = self._pending, self._data
        self._pending, self._data, self._sizes[1] = None, [], 0
        return context, fields, raw, data

    def release(self, timeout: float) -> None:
        """A-RELEASE, a collision handled as PS3.8 says (either side); an abort when
        the peer does not answer within ``timeout``."""
        if self.state is not State.STA6:
            self.abort("")
            return
        deadline = time.monotonic() + timeout
        try:
            self.fire(Event.EVT11)
            while self.state not in (State.STA1, State.STA13):
                self.receive(max(0.0, deadline - time.monotonic()))
                if self.state in (State.STA9, State.STA12):  # both asked (PS3.8 7.2.2):
                    self.fire(Event.EVT14)  # the requestor answers first, the acceptor after
        except ul.Silent:
            self.abort("no A-RELEASE-RP in time")
            return
        except ul.Closed:
            return
        self.linger()

    def abort(self, why: str) -> ul.Closed:
        """A-ABORT (service user) unless the association is over already; the error."""
        if why:
            self.ended = why
        try:
            if (self.state, Event.EVT15) in TABLE:
                self.fire(Event.EVT15)
        except ul.Closed:
            pass
        self.linger()
        self.link.close()
        return ul.Closed(self.ended or "aborted")


class Rejected(ul.Closed):
    """The peer answered our A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ."""


def _p_data(context: int, command_set: bytes, dataset: bytes, peer_max: int) -> bytes:
    chunk = peer_max - 6 if peer_max > 6 else max(len(command_set), len(dataset), 1)
    out = []
    for payload, is_command in ((command_set, True), (dataset, False)):
        for at in range(0, len(payload), chunk):
            fragment = payload[at : at + chunk]
            control = (1 if is_command else 0) | (2 if at + chunk >= len(payload) else 0)
            pdv = struct.pack(">IBB", len(fragment) + 2, context, control) + fragment
            out.append(struct.pack(">BxI", pdus.P_DATA, len(pdv)) + pdv)
    return b"".join(out)
