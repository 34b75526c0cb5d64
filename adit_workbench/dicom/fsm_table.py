"""The association states, events and transitions of PS3.8 9.2, as data.

:data:`TABLE` is PS3.8 Table 9-10: ``(state, event) -> action``; each action (PS3.8
Tables 9-6 to 9-9) is a method of :class:`~.fsm_actions.Actions` that returns the next
state. A pair missing from the table is a local call the standard does not allow in that
state (our bug, raised); every PDU that can arrive has an entry, so whatever a peer
sends lands on a defined action, usually an A-P-ABORT.
"""

from __future__ import annotations

from enum import IntEnum

from . import pdus

__all__ = ["METHODS", "PDU_EVENTS", "TABLE", "Event", "State"]


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
METHODS = {action: "_" + action.replace("-", "_").lower() for action in set(TABLE.values())}

PDU_EVENTS = {
    pdus.ASSOCIATE_RQ: Event.EVT6,
    pdus.ASSOCIATE_AC: Event.EVT3,
    pdus.ASSOCIATE_RJ: Event.EVT4,
    pdus.P_DATA: Event.EVT10,
    pdus.RELEASE_RQ: Event.EVT12,
    pdus.RELEASE_RP: Event.EVT13,
    pdus.ABORT: Event.EVT16,
}
