"""The socket-level C-GET stream (:mod:`adit_workbench.dicom.scu`).

Against Orthanc: the same bytes as pynetdicom's C-GET handler path. Against scripted
pynetdicom Get SCPs: every way a C-GET can end badly, caused for real (rejection,
abort, silence, failed sub-operations, a model not accepted, a tiny PDU limit).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE, build_context, build_role, evt

from adit_workbench.config import Settings
from adit_workbench.dicom.association import GET_STORAGE_SOP_CLASSES, QR_MODELS, VERIFICATION
from adit_workbench.dicom.dimse import DimseNode
from adit_workbench.dicom.pdus import ALL_SYNTAXES, IMPLEMENTATION_UID
from adit_workbench.dicom.retrieve import iter_cget
from adit_workbench.dicom.spec import ServerSpec
from adit_workbench.errors import (
    AssociationRejected,
    DicomStatusError,
    NodeTimeout,
    NodeUnreachable,
    NotSupported,
)
from tests.dicom.conftest import archive_datasets, server_spec
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer

ALL = archive_datasets()
FIRST = ALL[0]
GET_MODEL = QR_MODELS["study", "get"]


def _study_query(ds: Dataset = FIRST) -> Dataset:
    query = Dataset()
    query.StudyInstanceUID = str(ds.StudyInstanceUID)
    return query


def _drain(stream: Iterator[bytes]) -> tuple[list[bytes], Any]:
    """The stream's items and its return value."""
    items: list[bytes] = []
    while True:
        try:
            items.append(next(stream))
        except StopIteration as stop:
            return items, stop.value


@pytest.mark.orthanc
def test_same_data_sets_as_pynetdicoms_c_get(
    loaded_orthanc: OrthancServer, node_settings: Settings
) -> None:
    with DimseNode(server_spec(loaded_orthanc, dicomweb=False), node_settings) as node:
        items, result = _drain(node.get_stream("STUDY", _study_query()))
    ours = {str(dcmread(io.BytesIO(data)).SOPInstanceUID): data for data in items}
    theirs: dict[str, bytes] = {}

    def keep(event: Any) -> int:
        theirs[str(event.request.AffectedSOPInstanceUID)] = event.encoded_dataset()
        return 0x0000

    ae = AE(ae_title=node_settings.ae_title)
    ae.add_requested_context(GET_MODEL)
    for uid in GET_STORAGE_SOP_CLASSES:
        ae.add_requested_context(uid)
    roles = [build_role(uid, scp_role=True) for uid in GET_STORAGE_SOP_CLASSES]
    assoc = ae.associate(
        loaded_orthanc.host,
        loaded_orthanc.dicom_port,
        ae_title=loaded_orthanc.ae_title,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, keep)],
    )
    query = _study_query()
    query.QueryRetrieveLevel = "STUDY"
    assert [status.Status for status, _ in assoc.send_c_get(query, GET_MODEL)][-1] == 0
    assoc.release()
    expected = {
        str(ds.SOPInstanceUID) for ds in ALL if ds.StudyInstanceUID == FIRST.StudyInstanceUID
    }
    assert set(ours) == expected == set(theirs)
    for uid, data in ours.items():  # the data set byte for byte; the file meta is ours
        meta = dcmread(io.BytesIO(data)).file_meta
        assert meta.ImplementationClassUID == IMPLEMENTATION_UID
        assert _dataset_bytes(data) == _dataset_bytes(theirs[uid])
    assert (result.status, result.completed, result.failed) == (0, len(expected), 0)


def _dataset_bytes(part10: bytes) -> bytes:
    """What follows the file meta group of Part-10 bytes."""
    meta_length = int.from_bytes(part10[140:144], "little")
    return part10[144 + meta_length :]


# -- scripted Get SCPs -------------------------------------------------------------------
@dataclass
class GetScp:
    """A pynetdicom Get SCP whose C-GET handler each test writes."""

    handler: Callable[[Any], Iterator[Any]]
    port: int = field(default_factory=free_port)
    ae_title: str = "GETSCP"
    ended: list[str] = field(default_factory=list)

    def spec(self, **changes: Any) -> ServerSpec:
        return ServerSpec(
            name="GETSCP", ae_title=self.ae_title, host="127.0.0.1", port=self.port, **changes
        )


@pytest.fixture
def get_scp() -> Iterator[Callable[..., GetScp]]:
    servers: list[Any] = []

    def start(
        handler: Callable[[Any], Iterator[Any]],
        *,
        models: tuple[str, ...] = (GET_MODEL,),
        max_pdu: int | None = None,
        calling: list[str] | None = None,
    ) -> GetScp:
        scp = GetScp(handler)
        ae = AE(ae_title=scp.ae_title)
        if max_pdu is not None:
            ae.maximum_pdu_size = max_pdu
        if calling is not None:
            ae.require_calling_aet = calling
        ae.add_supported_context(VERIFICATION)
        for model in models:
            ae.add_supported_context(model)
        for uid in GET_STORAGE_SOP_CLASSES:
            ae.add_supported_context(uid, scu_role=False, scp_role=True)
        handlers = [
            (evt.EVT_C_GET, handler),
            (evt.EVT_RELEASED, lambda event: scp.ended.append("released")),
            (evt.EVT_ABORTED, lambda event: scp.ended.append("aborted")),
        ]
        servers.append(ae.start_server(("127.0.0.1", scp.port), block=False, evt_handlers=handlers))
        return scp

    yield start
    for server in servers:
        server.shutdown()


def _serve(datasets: list[Dataset]) -> Callable[[Any], Iterator[Any]]:
    def handle(event: Any) -> Iterator[Any]:
        yield len(datasets)
        for ds in datasets:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    return handle


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_full_stream_ends_in_a_release(get_scp: Any, node_settings: Settings) -> None:
    scp = get_scp(_serve(ALL[:3]))
    with DimseNode(scp.spec(), node_settings) as node:
        items, result = _drain(node.get_stream("STUDY", _study_query()))
    assert [dcmread(io.BytesIO(d)).SOPInstanceUID for d in items] == [
        d.SOPInstanceUID for d in ALL[:3]
    ]
    assert (result.completed, result.failed) == (3, 0)
    _wait_for(lambda: bool(scp.ended))
    assert set(scp.ended) == {"released"}  # the C-GET's and the SOP class lookup's


def test_closing_early_cancels_and_releases(get_scp: Any, node_settings: Settings) -> None:
    scp = get_scp(_serve(ALL))
    with DimseNode(scp.spec(), node_settings) as node:
        classes = {str(ds.SOPClassUID) for ds in ALL}
        stream = node.get_stream("STUDY", _study_query(), sop_classes=classes)
        next(stream)
        started = time.monotonic()
        stream.close()
        closed_in = time.monotonic() - started
        assert node.pool.open_count == 0  # the slot is given back
    assert closed_in < 2.0  # C-CANCEL answered at once; the design bound is 1 s, plus load
    _wait_for(lambda: bool(scp.ended))
    assert scp.ended == ["released"]  # the server answered the C-CANCEL: no abort


def test_failed_sub_operations_raise_after_the_rest(get_scp: Any, node_settings: Settings) -> None:
    unknown = Dataset()
    unknown.SOPClassUID = "1.2.826.0.1.3680043.8.498.999"  # a class we do not propose
    unknown.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1000"
    scp = get_scp(_serve([ALL[0], unknown, ALL[1]]))
    with DimseNode(scp.spec(), node_settings) as node:
        got: list[Dataset] = []
        with pytest.raises(DicomStatusError) as info:
            for ds in iter_cget(node, "STUDY", _study_query()):
                got.append(ds)
    assert [ds.SOPInstanceUID for ds in got] == [ALL[0].SOPInstanceUID, ALL[1].SOPInstanceUID]
    assert "1 of 3 instances failed" in str(info.value)


def test_a_failure_status_raises(get_scp: Any, node_settings: Settings) -> None:
    def handle(event: Any) -> Iterator[Any]:
        yield 1
        yield 0xA702, None  # out of resources: unable to perform sub-operations

    scp = get_scp(handle)
    with DimseNode(scp.spec(), node_settings) as node, pytest.raises(DicomStatusError) as info:
        list(node.get_stream("STUDY", _study_query()))
    assert info.value.status == 0xA702


def test_an_abort_mid_stream_raises(get_scp: Any, node_settings: Settings) -> None:
    def handle(event: Any) -> Iterator[Any]:
        yield 2
        yield 0xFF00, ALL[0]
        event.assoc.abort()
        yield 0xFF00, ALL[1]

    scp = get_scp(handle)
    with DimseNode(scp.spec(), node_settings) as node:
        stream = node.get_stream("STUDY", _study_query())
        assert next(stream)
        with pytest.raises(AssociationRejected, match="aborted"):
            next(stream)


def test_silence_times_out(
    get_scp: Any, node_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def handle(event: Any) -> Iterator[Any]:
        yield 2
        yield 0xFF00, ALL[0]
        time.sleep(1.5)
        yield 0xFF00, ALL[1]

    scp = get_scp(handle)
    settings = node_settings.model_copy(update={"dimse_timeout": 0.5})
    with DimseNode(scp.spec(), settings) as node:
        stream = node.get_stream("STUDY", _study_query())
        assert next(stream)
        with pytest.raises(NodeTimeout, match=r"no response within 0\.5 s"):
            next(stream)


def test_rejection_refusal_and_unaccepted_model(get_scp: Any, node_settings: Settings) -> None:
    picky = get_scp(_serve(ALL[:1]), calling=["SOMEONE_ELSE"])
    with (
        DimseNode(picky.spec(), node_settings) as node,
        pytest.raises(AssociationRejected, match="rejected by GETSCP"),
    ):
        list(node.get_stream("STUDY", _study_query()))
    patient_only = get_scp(_serve(ALL[:1]), models=(QR_MODELS["patient", "get"],))
    with (
        DimseNode(patient_only.spec(), node_settings) as node,
        pytest.raises(NotSupported, match="study-root C-GET not accepted"),
    ):
        list(node.get_stream("STUDY", _study_query()))
    nobody = ServerSpec(name="NOBODY", ae_title="NOBODY", host="127.0.0.1", port=free_port())
    with DimseNode(nobody, node_settings) as node, pytest.raises(NodeUnreachable):
        list(node.get_stream("STUDY", _study_query()))


def test_messages_are_split_to_the_peers_pdu_limit(get_scp: Any, node_settings: Settings) -> None:
    # pynetdicom's smallest PDU: our C-GET-RQ and every C-STORE-RSP go in fragments.
    scp = get_scp(_serve(ALL[:2]), max_pdu=64)
    with DimseNode(scp.spec(), node_settings) as node:
        items, result = _drain(node.get_stream("STUDY", _study_query(ALL[0])))
    assert len(items) == 2 and result.completed == 2


def test_the_stream_counts_within_the_nodes_limit(get_scp: Any, node_settings: Settings) -> None:
    scp = get_scp(_serve(ALL[:2]))
    with DimseNode(scp.spec(max_associations=1), node_settings) as node:
        node.echo()  # leaves an idle query association in the pool
        assert node.pool.open_count == 1
        stream = node.get_stream("STUDY", _study_query())
        next(stream)
        assert node.pool.open_count == 1  # the idle one made room
        _drain(stream)
        assert node.pool.open_count == 0


def test_the_association_request_is_the_one_pynetdicom_encodes() -> None:
    from pydicom.uid import UID
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        ImplementationClassUIDNotification,
        ImplementationVersionNameNotification,
        MaximumLengthNotification,
    )

    from adit_workbench.dicom.fsm import MAX_PDU
    from adit_workbench.dicom.pdus import IMPLEMENTATION_VERSION
    from adit_workbench.dicom.scu import _request

    classes = ("1.2.840.10008.5.1.4.1.1.2", "1.3.12.2.1107.5.9.1")
    ours, proposed = _request("WORKBENCH", "ORTHANC", GET_MODEL, classes)
    contexts = []
    for context_id, abstract, syntaxes in proposed:
        context = build_context(abstract, syntaxes)
        context.context_id = context_id
        contexts.append(context)
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID("1.2.840.10008.3.1.1.1")
    primitive.calling_ae_title = "WORKBENCH"
    primitive.called_ae_title = "ORTHANC"
    primitive.presentation_context_definition_list = contexts
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = MAX_PDU
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = UID(IMPLEMENTATION_UID)
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION
    roles = [build_role(uid, scp_role=True) for uid in classes]
    primitive.user_information = [max_length, implementation, version, *roles]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    assert ours == pdu.encode()
    # Two classes: a context per compressed syntax each, so a PACS that does not
    # transcode finds one for every instance as it is stored.
    assert [uid for _, uid, _ in proposed] == [GET_MODEL] + [classes[0]] * 16 + [classes[1]] * 16
    assert {s for _, uid, syntaxes in proposed if uid == classes[1] for s in syntaxes} == set(
        ALL_SYNTAXES
    )
