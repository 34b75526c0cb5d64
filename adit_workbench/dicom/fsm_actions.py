"""The actions of the association state machine (PS3.8 Tables 9-6 to 9-9).

:class:`Actions` holds one association's state and runs, for an event, the action
:data:`~.fsm_table.TABLE` names (:meth:`Actions.fire`); each action sends or closes what
the standard says and returns the next state. Reading PDUs and the user's primitives
are :class:`~.fsm.Machine`'s, built on this.
"""

from __future__ import annotations

import time
from collections import deque

from . import pdus
from . import upperlayer as ul
from .fsm_table import METHODS, TABLE, Event, State
from .pdus import Negotiation
from .pdv import MAX_MESSAGE, MAX_PDU, PDV

__all__ = ["Actions"]


class Actions:
    """One association's state and the PS3.8 actions over a :class:`~.upperlayer.Link`.

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
        method = getattr(self, METHODS[action])
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
