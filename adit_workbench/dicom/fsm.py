"""The association state machine of PS3.8 9.2 for the lean upper layer: its I/O.

The states, events and table are :mod:`.fsm_table`'s, the actions
:mod:`.fsm_actions`', the P-DATA items :mod:`.pdv`'s. What the table alone does not
say, and this module adds:

* every PDU is read whole within one deadline (a peer trickling bytes is cut off) and
  its announced length is checked against a bound before a byte of it is allocated:
  our maximum for P-DATA-TF, :data:`NEGOTIATION_CAP` for A-ASSOCIATE PDUs, 4 for the
  others (:meth:`Machine._bound`);
* the ARTIM timer bounds Sta2 (awaiting the A-ASSOCIATE-RQ) and Sta13 (awaiting the
  close), so a silent or slow peer frees its slot;
* P-DATA-TF PDUs are checked before they are indicated (:func:`~.pdv.pdvs`); DIMSE
  messages are assembled in :meth:`Machine.messages`, which aborts a data set without
  its command, a command whose data set never came, and command sets or messages
  above their bounds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from . import pdus
from . import upperlayer as ul
from .fsm_actions import Actions
from .fsm_table import PDU_EVENTS, TABLE, Event, State
from .pdus import Invalid, Negotiation
from .pdv import COMMAND_CAP, MAX_MESSAGE, MAX_PDU, PDV, p_data, pdvs

__all__ = [
    "COMMAND_CAP",
    "MAX_MESSAGE",
    "MAX_PDU",
    "NEGOTIATION_CAP",
    "PDV",
    "TABLE",
    "Event",
    "Machine",
    "Rejected",
    "State",
    "pdvs",
]

log = logging.getLogger(__name__)

#: Largest A-ASSOCIATE-RQ/-AC read: 128 contexts with 30 transfer syntaxes each fit.
NEGOTIATION_CAP = 1 << 18


class Machine(Actions):
    """One association's state machine over a :class:`~.upperlayer.Link`: the PDUs
    read and the user's primitives (see :class:`~.fsm_actions.Actions` for the
    arguments)."""

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
        event = PDU_EVENTS[kind]
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
        self.fire(Event.EVT9, p_data(context, command_set, dataset, self.peer_max))

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
