"""Hostile and broken peers against the lean upper layer, byte by byte.

In the spirit of pynetdicom's FSM tests: a raw socket speaks to the receiver
(:class:`~adit_workbench.dicom.receiver.Receiver`) and a raw socket server answers our
SCU (:mod:`adit_workbench.dicom.scu`). For each sequence: the right A-ABORT (source,
reason) or A-ASSOCIATE-RJ (result, source, reason), the connection closed and the slot
freed within the deadlines (0.5 s ARTIM, 1.5 s per PDU here), no allocation above the
PDU bound (tracemalloc peak), and the receiver still serves the next good association.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.dsutils import encode

from adit_workbench.config import Settings
from adit_workbench.dicom import pdus
from adit_workbench.dicom import upperlayer as ul
from adit_workbench.dicom.dimse import DimseNode
from adit_workbench.dicom.fsm import NEGOTIATION_CAP
from adit_workbench.dicom.pdv import COMMAND_CAP, MAX_PDU
from adit_workbench.dicom.pdv import p_data as _p_data
from adit_workbench.dicom.receiver import Receiver, allow_list
from adit_workbench.dicom.spec import ServerSpec
from adit_workbench.errors import AssociationRejected, NodeError, NodeTimeout, NotSupported
from tests.dicom.conftest import archive_datasets

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"
MOVE_MODEL = "1.2.840.10008.5.1.4.1.2.2.2"
DEADLINE = 0.5  # ARTIM (and our SCU's timeouts) in these tests
IDLE = 1.5  # the receiver's per-PDU timeout: a good peer under tracemalloc stays in it
FREED_WITHIN = 5.0  # deadline, linger and a loaded machine's slack
ALLOC_BOUND = MAX_PDU + NEGOTIATION_CAP  # the most one association may hold
DATASET = next(ds for ds in archive_datasets() if ds.SOPClassUID == CT)


# -- the wire ---------------------------------------------------------------------------
def header(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxI", kind, len(body)) + body


def summary(pdu: tuple[int, bytes] | None) -> str:
    """A PDU in words the cases compare: ``abort 2 6``, ``reject 1 1 7`` …"""
    if pdu is None:
        return "closed"
    kind, body = pdu
    if kind == pdus.ABORT:
        return f"abort {body[2]} {body[3]}"
    if kind == pdus.ASSOCIATE_RJ:
        return f"reject {body[1]} {body[2]} {body[3]}"
    return {pdus.RELEASE_RP: "release-rp", pdus.RELEASE_RQ: "release-rq"}.get(kind, f"0x{kind:02X}")


class Wire:
    """A raw TCP peer that records the PDUs it reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.got: list[tuple[int, bytes]] = []

    @classmethod
    def connect(cls, port: int) -> Wire:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=5))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, every: float = 0.1) -> None:
        """Send a byte at a time (slowloris) until done or cut off."""
        try:
            for at in range(len(data)):
                self.sock.sendall(data[at : at + 1])
                time.sleep(every)
        except OSError:
            pass

    def _exact(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except (TimeoutError, OSError):
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def pdu(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next PDU; None when the connection closed (or nothing came in time)."""
        self.sock.settimeout(timeout)
        head = self._exact(6)
        if head is None:
            return None
        length = int.from_bytes(head[2:6], "big")
        assert length < 1 << 24, "the peer announced an absurd PDU"
        body = self._exact(length)
        if body is None:
            return None
        self.got.append((head[0], body))
        return head[0], body

    def expect(self, kind: int) -> bytes:
        pdu = self.pdu()
        assert pdu is not None and pdu[0] == kind, f"expected PDU 0x{kind:02X}, got {pdu}"
        return pdu[1]

    def closes(self, timeout: float = FREED_WITHIN) -> bool:
        """Whether the peer closes the connection within ``timeout`` (PDUs recorded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not chunk:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


def request(
    *,
    called: str = "ADIT_WB",
    calling: str = "GOODPEER",
    version: int = 1,
    application: str = pdus.APPLICATION_CONTEXT,
    contexts: bytes | None = None,
    user: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    """An A-ASSOCIATE-RQ, good unless told otherwise."""
    if contexts is None:
        contexts = b"".join(
            pdus.item(0x20, bytes([cid, 0, 0, 0]) + pdus.item(0x30, uid.encode()) + syntax)
            for cid, uid, syntax in (
                (1, CT, pdus.item(0x40, pdus.EXPLICIT_LE.encode())),
                (3, VERIFICATION, pdus.item(0x40, pdus.IMPLICIT_LE.encode())),
            )
        )
    if user is None:
        user = pdus.item(
            0x50,
            pdus.item(0x51, struct.pack(">I", 16384))
            + pdus.item(0x52, b"1.2.3.4")
            + pdus.item(0x55, b"HOSTILE"),
        )
    body = struct.pack(">H2x", version) + pdus.ae_field(called) + pdus.ae_field(calling)
    body += bytes(32) + pdus.item(0x10, application.encode()) + contexts + extra + user
    return header(pdus.ASSOCIATE_RQ, body)


def store_rq(sop_class: str = CT, dataset: bool = True, message_id: int = 1) -> bytes:
    return ul.command(
        (ul.SOP_CLASS, sop_class.encode()),
        (ul.FIELD, ul.us(ul.C_STORE_RQ)),
        (ul.MESSAGE_ID, ul.us(message_id)),
        (ul.PRIORITY, ul.us(0)),
        (ul.DATASET_TYPE, ul.us(0x0000 if dataset else ul.NO_DATASET)),
        (ul.SOP_INSTANCE, str(DATASET.SOPInstanceUID).encode()),
    )


def pdv(context: int, control: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) + 2 if length is None else length
    return struct.pack(">IBB", size, context, control) + payload


def p_data(*items: bytes) -> bytes:
    return header(pdus.P_DATA, b"".join(items))


ENCODED = encode(DATASET, False, True) or b""


# -- the receiver -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    spool: Path = tmp_path_factory.mktemp("spool")
    settings = Settings(
        data_dir=spool.parent / "data",
        ae_title="ADIT_WB",
        network_timeout=IDLE,
        connect_timeout=DEADLINE,
    )
    allow = allow_list(["GOODPEER@127.0.0.1", "FARPEER@192.0.2.1"])
    with Receiver(settings, spool=spool, port=0, allow=allow, host="127.0.0.1") as running:
        assert _good_store(running.port) == 0  # warm: imports done before measuring
        tracemalloc.start()
        yield running
        tracemalloc.stop()


def _good_store(port: int) -> int:
    ae = AE(ae_title="GOODPEER")
    ae.add_requested_context(CT)
    assoc = ae.associate("127.0.0.1", port, ae_title="ADIT_WB")
    assert assoc.is_established, "the receiver no longer serves a good association"
    try:
        return int(assoc.send_c_store(DATASET).Status)
    finally:
        assoc.release()


def associated(wire: Wire) -> None:
    """Negotiate properly (CT on context 1, verification on 3)."""
    wire.send(request())
    wire.expect(pdus.ASSOCIATE_AC)


Case = Callable[[Wire], str]
P, U = pdus.SERVICE_PROVIDER, pdus.SERVICE_USER
HUGE = 0xFFFFFFFF


def _rq_huge(wire: Wire) -> str:
    wire.send(struct.pack(">BxI", pdus.ASSOCIATE_RQ, HUGE))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _rq_above_cap(wire: Wire) -> str:
    wire.send(struct.pack(">BxI", pdus.ASSOCIATE_RQ, NEGOTIATION_CAP + 1) + bytes(1000))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _p_data_huge_before_association(wire: Wire) -> str:
    wire.send(struct.pack(">BxI", pdus.P_DATA, 1 << 31))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _unknown_type(wire: Wire) -> str:
    wire.send(struct.pack(">BxI", 0x09, 4) + bytes(4))
    return f"abort {P} {pdus.UNRECOGNIZED_PDU}"


def _type_zero(wire: Wire) -> str:
    wire.send(bytes(10))
    return f"abort {P} {pdus.UNRECOGNIZED_PDU}"


def _truncated_rq_then_silence(wire: Wire) -> str:
    wire.send(request()[:40])
    return "closed"  # ARTIM: the connection is closed


def _truncated_rq_then_close(wire: Wire) -> str:
    wire.send(request()[:40])
    wire.sock.shutdown(socket.SHUT_WR)
    return "closed"


def _silence(wire: Wire) -> str:
    return "closed"


def _slowloris_rq(wire: Wire) -> str:
    wire.trickle(request(), every=0.05)  # 0.5 s ARTIM: cut off after some ten bytes
    return "closed"


def _ac_to_acceptor(wire: Wire) -> str:
    wire.send(header(pdus.ASSOCIATE_AC, request()[6:]))
    return f"abort {P} {pdus.UNEXPECTED_PDU}"


def _release_before_association(wire: Wire) -> str:
    wire.send(pdus.RELEASE_RQ_PDU)
    return f"abort {P} {pdus.UNEXPECTED_PDU}"


def _p_data_before_association(wire: Wire) -> str:
    wire.send(p_data(pdv(1, 3, store_rq())))
    return f"abort {P} {pdus.UNEXPECTED_PDU}"


def _abort_during_negotiation(wire: Wire) -> str:
    wire.send(pdus.abort_pdu(U))
    return "closed"


def _item_past_its_pdu(wire: Wire) -> str:
    good = request()
    body = bytearray(good[6:])
    at = 68 + 4 + len(pdus.APPLICATION_CONTEXT)  # the first presentation context item
    body[at + 2 : at + 4] = (0xFFF0).to_bytes(2, "big")
    wire.send(header(pdus.ASSOCIATE_RQ, bytes(body)))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _no_presentation_context(wire: Wire) -> str:
    wire.send(request(contexts=b""))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _context_without_syntax(wire: Wire) -> str:
    wire.send(request(contexts=pdus.item(0x20, bytes([1, 0, 0, 0]) + pdus.item(0x30, b"1.2"))))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _unknown_item(wire: Wire) -> str:
    wire.send(request(extra=pdus.item(0x99, b"x")))
    return f"abort {P} {pdus.UNRECOGNIZED_PARAMETER}"


def _bad_max_length(wire: Wire) -> str:
    wire.send(request(user=pdus.item(0x50, pdus.item(0x51, b"\x00\x01\x00"))))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _bad_role_item(wire: Wire) -> str:
    role = pdus.item(0x54, struct.pack(">H", 200) + b"1.2.3" + b"\x01\x00")
    wire.send(request(user=pdus.item(0x50, pdus.item(0x51, bytes(4)) + role)))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _protocol_version(wire: Wire) -> str:
    wire.send(request(version=2))
    return f"reject {pdus.PERMANENT} {pdus.RJ_ACSE} {pdus.RJ_PROTOCOL_VERSION}"


def _bogus_application_context(wire: Wire) -> str:
    wire.send(request(application="1.2.3.4.5"))
    return f"reject {pdus.PERMANENT} {pdus.RJ_USER} {pdus.RJ_CONTEXT_NOT_SUPPORTED}"


def _wrong_called_ae(wire: Wire) -> str:
    wire.send(request(called="../../etc"))
    return f"reject {pdus.PERMANENT} {pdus.RJ_USER} {pdus.RJ_CALLED_UNKNOWN}"


def _unknown_calling_ae(wire: Wire) -> str:
    wire.send(request(calling="STRANGER"))
    return f"reject {pdus.PERMANENT} {pdus.RJ_USER} {pdus.RJ_CALLING_UNKNOWN}"


def _known_ae_from_another_address(wire: Wire) -> str:
    wire.send(request(calling="FARPEER"))  # allowed from 192.0.2.1, not from here
    return f"reject {pdus.PERMANENT} {pdus.RJ_USER} {pdus.RJ_CALLING_UNKNOWN}"


def _p_data_above_max(wire: Wire) -> str:
    associated(wire)
    wire.send(struct.pack(">BxI", pdus.P_DATA, MAX_PDU + 1) + bytes(100))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _p_data_huge(wire: Wire) -> str:
    associated(wire)
    wire.send(struct.pack(">BxI", pdus.P_DATA, HUGE))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _pdv_past_its_pdu(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 3, store_rq(), length=10_000)))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _pdv_too_short(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 3, b"", length=1) + b"\x01"))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _pdv_bogus_context(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(7, 3, store_rq())))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _pdv_reserved_bits(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 0x83, store_rq())))
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _empty_p_data(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data())
    return f"abort {P} {pdus.INVALID_PARAMETER}"


def _data_without_command(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 2, ENCODED)))
    return f"abort {U} 0"


def _command_without_data(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 3, store_rq(dataset=False))))
    return f"abort {U} 0"


def _command_then_command(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 3, store_rq()), pdv(1, 3, store_rq(message_id=2))))
    return f"abort {U} 0"


def _data_on_another_context(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 3, store_rq()), pdv(3, 2, ENCODED)))
    return f"abort {U} 0"


def _malformed_command(wire: Wire) -> str:
    associated(wire)
    broken = struct.pack("<HHI", 0, 0x0100, 0xFFFF) + b"\x01\x00"
    wire.send(p_data(pdv(1, 3, broken)))
    return f"abort {U} 0"


def _endless_command(wire: Wire) -> str:
    associated(wire)
    chunk = pdv(1, 1, bytes(8000))
    for _ in range(COMMAND_CAP // 8000 + 2):
        wire.send(p_data(chunk))
    return f"abort {U} 0"


def _find_on_a_storage_context(wire: Wire) -> str:
    associated(wire)
    find = ul.command(
        (ul.SOP_CLASS, CT.encode()),
        (ul.FIELD, ul.us(0x0020)),
        (ul.MESSAGE_ID, ul.us(1)),
        (ul.DATASET_TYPE, ul.us(ul.NO_DATASET)),
    )
    wire.send(p_data(pdv(1, 3, find)))
    return f"abort {U} 0"


def _rq_again_when_established(wire: Wire) -> str:
    associated(wire)
    wire.send(request())
    return f"abort {P} {pdus.UNEXPECTED_PDU}"


def _release_rp_unasked(wire: Wire) -> str:
    associated(wire)
    wire.send(pdus.RELEASE_RP_PDU)
    return f"abort {P} {pdus.UNEXPECTED_PDU}"


def _silent_when_established(wire: Wire) -> str:
    associated(wire)
    return f"abort {U} 0"


def _slowloris_when_established(wire: Wire) -> str:
    associated(wire)
    wire.trickle(p_data(pdv(1, 3, store_rq())), every=0.05)
    return f"abort {U} 0"


def _release_in_the_middle_of_a_message(wire: Wire) -> str:
    associated(wire)
    wire.send(p_data(pdv(1, 3, store_rq())) + pdus.RELEASE_RQ_PDU)
    return f"abort {U} 0"


def _abort_when_established(wire: Wire) -> str:
    associated(wire)
    wire.send(pdus.abort_pdu(U))
    return "closed"


def _release_twice(wire: Wire) -> str:
    associated(wire)
    wire.send(pdus.RELEASE_RQ_PDU + pdus.RELEASE_RQ_PDU)  # the second one is ignored
    return "release-rp"


def _store_on_the_wrong_context(wire: Wire) -> str:
    associated(wire)  # a CT instance on the verification context: refused, not stored
    wire.send(p_data(pdv(3, 3, store_rq())) + p_data(pdv(3, 2, ENCODED)))
    response = wire.pdu()
    assert response is not None and response[0] == pdus.P_DATA
    assert ul.number(ul.parse_command(response[1][6:]), ul.STATUS) == 0x0122
    wire.send(pdus.RELEASE_RQ_PDU)
    return "release-rp"


RECEIVER_CASES: dict[str, Case] = {
    case.__name__.lstrip("_"): case
    for case in (
        _rq_huge,
        _rq_above_cap,
        _p_data_huge_before_association,
        _unknown_type,
        _type_zero,
        _truncated_rq_then_silence,
        _truncated_rq_then_close,
        _silence,
        _slowloris_rq,
        _ac_to_acceptor,
        _release_before_association,
        _p_data_before_association,
        _abort_during_negotiation,
        _item_past_its_pdu,
        _no_presentation_context,
        _context_without_syntax,
        _unknown_item,
        _bad_max_length,
        _bad_role_item,
        _protocol_version,
        _bogus_application_context,
        _wrong_called_ae,
        _unknown_calling_ae,
        _known_ae_from_another_address,
        _p_data_above_max,
        _p_data_huge,
        _pdv_past_its_pdu,
        _pdv_too_short,
        _pdv_bogus_context,
        _pdv_reserved_bits,
        _empty_p_data,
        _data_without_command,
        _command_without_data,
        _command_then_command,
        _data_on_another_context,
        _malformed_command,
        _endless_command,
        _find_on_a_storage_context,
        _rq_again_when_established,
        _release_rp_unasked,
        _silent_when_established,
        _slowloris_when_established,
        _release_in_the_middle_of_a_message,
        _abort_when_established,
        _release_twice,
        _store_on_the_wrong_context,
    )
}


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("name", list(RECEIVER_CASES))
def test_receiver_against(name: str, receiver: Receiver) -> None:
    server = receiver._server
    assert server is not None
    stored = receiver.received
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    wire = Wire.connect(receiver.port)
    try:
        expected = RECEIVER_CASES[name](wire)
        answer = wire.pdu(timeout=FREED_WITHIN)
        assert summary(answer) == expected
        assert wire.closes(), "the receiver kept the connection open"
    finally:
        wire.close()
    assert _wait_for(lambda: server.open_count == 0, FREED_WITHIN), "the slot stayed taken"
    peak = tracemalloc.get_traced_memory()[1] - base
    assert peak < ALLOC_BOUND, f"{peak} bytes allocated for a hostile peer"
    assert receiver.received == stored, "something hostile was stored"
    assert _good_store(receiver.port) == 0


def test_a_compressed_instance_is_taken_as_sent(receiver: Receiver) -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small_jp2klossless.dcm", download=False)
    assert path is not None
    ds = dcmread(path)
    ae = AE(ae_title="GOODPEER")
    ae.add_requested_context(str(ds.SOPClassUID), [str(ds.file_meta.TransferSyntaxUID)])
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="ADIT_WB")
    assert assoc.is_established
    assert int(assoc.send_c_store(ds).Status) == 0
    assoc.release()
    spooled = next(receiver.spool.rglob(f"{ds.SOPInstanceUID}.dcm"))
    got = dcmread(spooled)
    assert got.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert got.PixelData == ds.PixelData


# -- our SCU against a scripted SCP ---------------------------------------------------
class FakeScp:
    """A socket server that answers one association with ``script(wire)`` and then
    records what our SCU sends until it closes."""

    def __init__(self, script: Callable[[Wire], None]) -> None:
        self.script = script
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.wire: Wire | None = None
        self.closed_by_scu = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.server.accept()
        self.wire = Wire(conn)
        try:
            self.script(self.wire)
        except BaseException as exc:  # shown by the test
            self.error = exc
        while self.wire.pdu(timeout=FREED_WITHIN) is not None:
            pass
        self.closed_by_scu = self.wire.closes(0.1)
        conn.close()
        self.server.close()

    def spec(self) -> ServerSpec:
        return ServerSpec(name="FAKE", ae_title="FAKE", host="127.0.0.1", port=self.port)

    def sent(self) -> list[str]:
        """What our SCU sent after its A-ASSOCIATE-RQ, in words."""
        self.thread.join(FREED_WITHIN + 2)
        assert not self.thread.is_alive(), "our SCU kept the connection open"
        assert self.error is None, self.error
        assert self.wire is not None
        return [summary(pdu) for pdu in self.wire.got[1:] if pdu[0] != pdus.P_DATA]


@pytest.fixture
def scu_settings(node_settings: Settings) -> Settings:
    return node_settings.model_copy(
        update={"connect_timeout": DEADLINE, "dimse_timeout": DEADLINE, "network_timeout": DEADLINE}
    )


def accept_all(
    rq: bytes, roles: bool = True, syntax: Callable[[list[str]], str] | None = None
) -> bytes:
    negotiation = pdus.parse_request(rq)
    results = [
        (cid, pdus.ACCEPTED, syntax(offered) if syntax else offered[0])
        for cid, _uid, offered in negotiation.contexts
    ]
    answered = [(uid, False, True) for uid in negotiation.roles] if roles else []
    return pdus.accept_pdu(rq, results, 0, answered)


def context_of(rq: bytes, uid: str) -> int:
    return next(cid for cid, abstract, _ in pdus.parse_request(rq).contexts if abstract == uid)


def get_rsp(status: int, completed: int = 0) -> bytes:
    return ul.command(
        (ul.SOP_CLASS, GET_MODEL.encode()),
        (ul.FIELD, ul.us(ul.C_GET_RSP)),
        (ul.RESPONDING_TO, ul.us(1)),
        (ul.DATASET_TYPE, ul.us(ul.NO_DATASET)),
        (ul.STATUS, ul.us(status)),
        (0x1021, ul.us(completed)),
        (0x1022, ul.us(0)),
        (0x1023, ul.us(0)),
    )


def run_get(fake: FakeScp, settings: Settings) -> tuple[list[bytes], Any]:
    """C-GET a study from ``fake``: the instances and the result or the error."""
    query = Dataset()
    query.StudyInstanceUID = str(DATASET.StudyInstanceUID)
    got: list[bytes] = []
    with DimseNode(fake.spec(), settings) as node:
        stream = node.get_stream("STUDY", query, sop_classes=[CT])
        try:
            while True:
                got.append(next(stream))
        except StopIteration as stop:
            return got, stop.value
        except NodeError as exc:
            return got, exc


def _serve_get(wire: Wire, *after_request: bytes) -> bytes:
    """Accept, read the C-GET-RQ (command and identifier), send ``after_request``."""
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(accept_all(rq))
    wire.expect(pdus.P_DATA)
    wire.expect(pdus.P_DATA)
    for data in after_request:
        wire.send(data)
    return rq


def _store_pdus(rq: bytes) -> bytes:
    ct = context_of(rq, CT)
    return _p_data(ct, store_rq(), ENCODED, 0)


SCU_CASES: dict[str, tuple[Callable[[Wire], None], type[BaseException] | None, list[str]]] = {}


def scu_case(
    error: type[BaseException] | None, sent: list[str]
) -> Callable[[Callable[[Wire], None]], Callable[[Wire], None]]:
    def register(script: Callable[[Wire], None]) -> Callable[[Wire], None]:
        SCU_CASES[script.__name__] = (script, error, sent)
        return script

    return register


@scu_case(AssociationRejected, [f"abort {P} {pdus.INVALID_PARAMETER}"])
def huge_accept(wire: Wire) -> None:
    wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(struct.pack(">BxI", pdus.ASSOCIATE_AC, HUGE))


@scu_case(AssociationRejected, [f"abort {P} {pdus.UNRECOGNIZED_PDU}"])
def unknown_pdu_for_an_answer(wire: Wire) -> None:
    wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(struct.pack(">BxI", 0x0A, 4) + bytes(4))


@scu_case(AssociationRejected, [f"abort {P} {pdus.UNEXPECTED_PDU}"])
def release_rp_for_an_answer(wire: Wire) -> None:
    wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(pdus.RELEASE_RP_PDU)


@scu_case(AssociationRejected, [])
def rejected(wire: Wire) -> None:
    wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(pdus.reject_pdu(pdus.PERMANENT, pdus.RJ_USER, pdus.RJ_CALLING_UNKNOWN))


@scu_case(AssociationRejected, [f"abort {U} 0"])
def bogus_application_context_in_the_answer(wire: Wire) -> None:
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    ac = bytearray(accept_all(rq))
    at = 6 + 68 + 4
    ac[at : at + len(pdus.APPLICATION_CONTEXT)] = b"9".rjust(len(pdus.APPLICATION_CONTEXT), b"9")
    wire.send(bytes(ac))


@scu_case(AssociationRejected, [f"abort {P} {pdus.INVALID_PARAMETER}"])
def accept_item_past_its_pdu(wire: Wire) -> None:
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    ac = bytearray(accept_all(rq))
    at = 6 + 68 + 4 + len(pdus.APPLICATION_CONTEXT)
    ac[at + 2 : at + 4] = (0xFFF0).to_bytes(2, "big")
    wire.send(bytes(ac))


@scu_case(NodeTimeout, [f"abort {U} 0"])
def truncated_accept(wire: Wire) -> None:
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(accept_all(rq)[:30])


@scu_case(NodeTimeout, [f"abort {U} 0"])
def slowloris_accept(wire: Wire) -> None:
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    wire.trickle(accept_all(rq), every=0.05)


@scu_case(NodeTimeout, [f"abort {U} 0"])
def no_answer(wire: Wire) -> None:
    wire.expect(pdus.ASSOCIATE_RQ)


@scu_case(AssociationRejected, [])
def abort_during_negotiation(wire: Wire) -> None:
    wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(pdus.abort_pdu(P, pdus.NOT_SPECIFIED))


@scu_case(NotSupported, ["release-rq"])
def model_in_a_syntax_we_never_offered(wire: Wire) -> None:
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(accept_all(rq, syntax=lambda offered: "1.2.840.10008.1.2.4.50"))
    wire.expect(pdus.RELEASE_RQ)
    wire.send(pdus.RELEASE_RP_PDU)


@scu_case(AssociationRejected, [f"abort {P} {pdus.INVALID_PARAMETER}"])
def huge_p_data(wire: Wire) -> None:
    _serve_get(wire, struct.pack(">BxI", pdus.P_DATA, HUGE))


@scu_case(AssociationRejected, [f"abort {P} {pdus.INVALID_PARAMETER}"])
def pdv_past_its_pdu(wire: Wire) -> None:
    _serve_get(wire, p_data(pdv(1, 3, get_rsp(0), length=5000)))


@scu_case(AssociationRejected, [f"abort {P} {pdus.INVALID_PARAMETER}"])
def pdv_on_a_context_never_proposed(wire: Wire) -> None:
    _serve_get(wire, p_data(pdv(255, 3, get_rsp(0))))


@scu_case(AssociationRejected, [f"abort {U} 0"])
def data_without_command_to_the_scu(wire: Wire) -> None:
    _serve_get(wire, p_data(pdv(1, 2, b"\x00" * 8)))


@scu_case(AssociationRejected, [f"abort {U} 0"])
def store_without_data_to_the_scu(wire: Wire) -> None:
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(accept_all(rq))
    wire.expect(pdus.P_DATA)
    wire.expect(pdus.P_DATA)
    wire.send(p_data(pdv(context_of(rq, CT), 3, store_rq(dataset=False))))


@scu_case(AssociationRejected, [f"abort {P} {pdus.UNEXPECTED_PDU}"])
def association_request_when_established(wire: Wire) -> None:
    _serve_get(wire, request())


@scu_case(AssociationRejected, ["release-rp"])
def release_in_the_middle_of_a_get(wire: Wire) -> None:
    _serve_get(wire, pdus.RELEASE_RQ_PDU)


@scu_case(NodeTimeout, [f"abort {U} 0"])
def slowloris_response(wire: Wire) -> None:
    _serve_get(wire)
    wire.trickle(p_data(pdv(1, 3, get_rsp(0))), every=0.05)


@scu_case(None, ["release-rq", "release-rp"])
def release_collision(wire: Wire) -> None:
    rq = _serve_get(wire)
    wire.send(_store_pdus(rq))
    wire.expect(pdus.P_DATA)  # the C-STORE-RSP
    wire.send(p_data(pdv(1, 3, get_rsp(0, completed=1))))
    wire.expect(pdus.RELEASE_RQ)
    wire.send(pdus.RELEASE_RQ_PDU)  # both ask at once (PS3.8 7.2.2): we are the acceptor
    wire.expect(pdus.RELEASE_RP)  # the requestor answers first …
    wire.send(pdus.RELEASE_RP_PDU)  # … then the acceptor


@scu_case(None, ["release-rq"])
def store_without_a_granted_role_is_refused(wire: Wire) -> None:
    rq = wire.expect(pdus.ASSOCIATE_RQ)
    wire.send(accept_all(rq, roles=False))  # no role selection answer: default roles
    wire.expect(pdus.P_DATA)
    wire.expect(pdus.P_DATA)
    wire.send(_store_pdus(rq))
    answer = wire.expect(pdus.P_DATA)
    assert ul.number(ul.parse_command(answer[6:]), ul.STATUS) == 0x0122
    wire.send(p_data(pdv(1, 3, get_rsp(0xB000))))
    wire.expect(pdus.RELEASE_RQ)
    wire.send(pdus.RELEASE_RP_PDU)


@pytest.mark.parametrize("name", list(SCU_CASES))
def test_scu_against(name: str, scu_settings: Settings) -> None:
    script, error, sent = SCU_CASES[name]
    fake = FakeScp(script)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        got, outcome = run_get(fake, scu_settings)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not tracing:
            tracemalloc.stop()
    if error is None:
        assert not isinstance(outcome, BaseException), outcome
        assert outcome.completed == len(got)  # what was refused is not yielded
    else:
        assert isinstance(outcome, error), outcome
    assert fake.sent() == sent
    assert peak < ALLOC_BOUND, f"{peak} bytes allocated for a hostile peer"


def test_a_peer_that_ignores_c_cancel_is_aborted_within_a_second(scu_settings: Settings) -> None:
    def ignore_cancel(wire: Wire) -> None:
        rq = _serve_get(wire)
        wire.send(_store_pdus(rq))
        wire.expect(pdus.P_DATA)  # the C-STORE-RSP; then the C-CANCEL, and silence

    fake = FakeScp(ignore_cancel)
    settings = scu_settings.model_copy(update={"dimse_timeout": 30.0})
    query = Dataset()
    query.StudyInstanceUID = str(DATASET.StudyInstanceUID)
    with DimseNode(fake.spec(), settings) as node:
        stream = node.get_stream("STUDY", query, sop_classes=[CT])
        assert next(stream)
        started = time.monotonic()
        stream.close()
        took = time.monotonic() - started
    assert took < 2.0  # design: 0.5 s grace and 0.4 s linger, not the 30 s DIMSE timeout
    assert fake.sent() == [f"abort {U} 0"]
    assert fake.wire is not None
    commands = [
        ul.parse_command(body[6:])
        for kind, body in fake.wire.got
        if kind == pdus.P_DATA and body[5] & 1
    ]
    assert ul.C_CANCEL_RQ in [ul.number(fields, ul.FIELD) for fields in commands]


def test_a_cancelled_move_returns_within_a_second(scu_settings: Settings) -> None:
    def busy_move(wire: Wire) -> None:
        rq = wire.expect(pdus.ASSOCIATE_RQ)
        wire.send(accept_all(rq))
        wire.expect(pdus.P_DATA)  # the C-MOVE-RQ command …
        wire.expect(pdus.P_DATA)  # … and its identifier; then nothing: a slow PACS

    fake = FakeScp(busy_move)
    settings = scu_settings.model_copy(update={"dimse_timeout": 30.0})
    cancel = threading.Event()
    query = Dataset()
    query.StudyInstanceUID = str(DATASET.StudyInstanceUID)
    outcome: list[Any] = []
    with DimseNode(fake.spec(), settings) as node:

        def run() -> None:
            try:
                outcome.append(node.move("STUDY", query, "ADIT_WB", cancel=cancel))
            except NodeError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)
        started = time.monotonic()
        cancel.set()
        worker.join(10)
        took = time.monotonic() - started
    assert took < 2.0  # design: 0.5 s grace and 0.4 s linger, not the 30 s DIMSE timeout
    assert isinstance(outcome[0], AssociationRejected)
    assert fake.sent() == [f"abort {U} 0"]
    assert fake.wire is not None
    fields = ul.parse_command(fake.wire.got[-2][1][6:])
    assert ul.number(fields, ul.FIELD) == ul.C_CANCEL_RQ


# -- the table itself --------------------------------------------------------------------
def test_the_table_defines_every_pdu_in_every_state() -> None:
    from adit_workbench.dicom.fsm import TABLE, Event, State

    pdu_events = [Event(n) for n in (3, 4, 6, 10, 12, 13, 16, 17, 19)]
    for state in State:
        if state in (State.STA1, State.STA4):
            continue  # no transport to read from
        for event in pdu_events:
            assert (state, event) in TABLE, f"{event.name} undefined in {state.name}"
    # spot checks against PS3.8 Table 9-10
    assert TABLE[State.STA2, Event.EVT6] == "AE-6"
    assert TABLE[State.STA6, Event.EVT10] == "DT-2"
    assert TABLE[State.STA7, Event.EVT12] == "AR-8"
    assert TABLE[State.STA10, Event.EVT13] == "AR-10"
    assert TABLE[State.STA11, Event.EVT13] == "AR-3"
    assert TABLE[State.STA13, Event.EVT17] == "AR-5"
    assert TABLE[State.STA13, Event.EVT6] == "AA-7"
    assert TABLE[State.STA4, Event.EVT15] == "AA-2"
    assert (State.STA13, Event.EVT15) not in TABLE  # nothing left to abort


@pytest.mark.parametrize("acceptor_first", [True, False])
def test_a_release_collision_ends_cleanly_on_both_sides(acceptor_first: bool) -> None:
    from adit_workbench.dicom.fsm import Machine, State

    ours, theirs = socket.socketpair()
    requestor = Machine(ul.Link(ours, "R", "test"), requestor=True, artim=DEADLINE)
    acceptor = Machine(ul.Link(theirs, "A", "test"), requestor=False, artim=DEADLINE)
    for machine in (requestor, acceptor):
        machine.state = State.STA6  # as after a negotiation
    # Both send A-RELEASE-RQ before reading the other's (PS3.8 7.2.2).
    first, second = (acceptor, requestor) if acceptor_first else (requestor, acceptor)
    threads = [threading.Thread(target=m.release, args=(FREED_WITHIN,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(FREED_WITHIN + 2)
    assert requestor.state is State.STA1 and acceptor.state is State.STA1
    assert not requestor.ended and not acceptor.ended  # released, nobody aborted
    assert list(requestor.actions) == ["AR-1", "AR-8", "AR-9", "AR-3"]
    assert list(acceptor.actions) == ["AR-1", "AR-8", "AR-10", "AR-4", "AR-5"]
