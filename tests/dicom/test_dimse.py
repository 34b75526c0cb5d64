"""The DIMSE node against real Orthancs and a scriptable pynetdicom SCP."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable

import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE

from adit_workbench.config import Settings
from adit_workbench.dicom.dimse import DimseNode, _identifier
from adit_workbench.dicom.node import QueryLevel, QueryRoot
from adit_workbench.dicom.spec import ServerSpec
from adit_workbench.errors import (
    AssociationRejected,
    DicomStatusError,
    InputError,
    NodeTimeout,
    NodeUnreachable,
)
from tests.dicom.conftest import FakeScp, archive_datasets, server_spec, study_query
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.orthanc

ALL = archive_datasets()


@pytest.fixture
def dimse(loaded_orthanc: OrthancServer, node_settings: Settings) -> DimseNode:
    node = DimseNode(server_spec(loaded_orthanc, dicomweb=False), node_settings)
    yield node  # type: ignore[misc]
    node.close()


# -- both roots, every level -------------------------------------------------------------
@pytest.mark.parametrize(
    ("level", "root", "key", "expected"),
    [
        ("PATIENT", "patient", "PatientID", {str(ds.PatientID) for ds in ALL}),
        ("STUDY", "patient", "StudyInstanceUID", {str(ds.StudyInstanceUID) for ds in ALL}),
        ("STUDY", "study", "StudyInstanceUID", {str(ds.StudyInstanceUID) for ds in ALL}),
        ("SERIES", "patient", "SeriesInstanceUID", {str(ds.SeriesInstanceUID) for ds in ALL}),
        ("SERIES", "study", "SeriesInstanceUID", {str(ds.SeriesInstanceUID) for ds in ALL}),
        ("IMAGE", "patient", "SOPInstanceUID", {str(ds.SOPInstanceUID) for ds in ALL}),
        ("IMAGE", "study", "SOPInstanceUID", {str(ds.SOPInstanceUID) for ds in ALL}),
    ],
)
def test_find_each_level_and_root(
    dimse: DimseNode, level: str, root: str, key: str, expected: set[str]
) -> None:
    found: set[str] = set()
    for patient_id in sorted({str(ds.PatientID) for ds in ALL}):
        query = Dataset()
        query.PatientID = patient_id
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")[
            : ["PATIENT", "STUDY", "SERIES", "IMAGE"].index(level)
        ]:
            setattr(query, keyword, "")
        query.PatientName = ""
        for match in dimse.find(level, query, root=root):
            assert match.QueryRetrieveLevel == level
            found.add(str(match[key].value))
    assert found == expected


def test_patient_level_needs_patient_root(dimse: DimseNode) -> None:
    with pytest.raises(InputError):
        dimse.find("PATIENT", Dataset(), root=QueryRoot.STUDY)


def test_many_finds_reuse_one_association(dimse: DimseNode) -> None:
    for _ in range(5):
        assert list(dimse.find("STUDY", study_query(), limit=2))
    dimse.echo()
    assert dimse.pool.open_count == 1


# -- limits and C-CANCEL -------------------------------------------------------------------
def test_limit_sends_c_cancel(fake_scp: FakeScp, node_settings: Settings) -> None:
    fake_scp.delay = 0.01
    with DimseNode(fake_scp.spec(), node_settings) as node:
        found = list(node.find("STUDY", study_query(), limit=3))
        assert len(found) == 3
        assert fake_scp.cancelled == [True]
        # The association survived the cancel and serves the next find.
        assert len(list(node.find("STUDY", study_query(), limit=2))) == 2
        assert fake_scp.associations == 1


def test_breaking_out_cancels_and_keeps_the_association(
    fake_scp: FakeScp, node_settings: Settings
) -> None:
    fake_scp.delay = 0.01
    with DimseNode(fake_scp.spec(), node_settings) as node:
        for index, _match in enumerate(node.find("STUDY", study_query())):
            if index == 1:
                break
        assert fake_scp.cancelled == [True]
        node.echo()
        assert fake_scp.associations == 1


def test_failure_status_raises(fake_scp: FakeScp, node_settings: Settings) -> None:
    fake_scp.matches = 2
    fake_scp.final_status = 0xC000
    with DimseNode(fake_scp.spec(), node_settings) as node:
        stream = node.find("STUDY", study_query())
        with pytest.raises(DicomStatusError) as info:
            list(stream)
    error = info.value
    assert (error.status, error.category, error.node, error.operation) == (
        0xC000,
        "Failure",
        "FAKE",
        "C-FIND",
    )


def test_timeout_raises_node_timeout(
    fake_scp: FakeScp, node_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_scp.delay = 2.0
    fast = node_settings.model_copy(update={"dimse_timeout": 0.5})
    with DimseNode(fake_scp.spec(), fast) as node, pytest.raises(NodeTimeout) as info:
        list(node.find("STUDY", study_query()))
    assert info.value.operation == "C-FIND"


def test_never_more_associations_than_allowed(fake_scp: FakeScp, node_settings: Settings) -> None:
    fake_scp.matches = 5
    fake_scp.delay = 0.02
    node = DimseNode(fake_scp.spec(max_associations=2), node_settings)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                assert len(list(node.find("STUDY", study_query()))) == 5
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    node.close()
    assert not errors
    assert fake_scp.open_max <= 2
    assert fake_scp.associations <= 2


# -- connection errors ---------------------------------------------------------------------
def test_closed_port_is_unreachable(node_settings: Settings) -> None:
    spec = ServerSpec(name="NOWHERE", ae_title="NOWHERE", host="127.0.0.1", port=free_port())
    with DimseNode(spec, node_settings) as node:
        with pytest.raises(NodeUnreachable) as info:
            node.echo()
        assert info.value.node == "NOWHERE" and info.value.operation == "C-ECHO"
        with pytest.raises(NodeUnreachable):
            list(node.find("STUDY", study_query()))


def test_wrong_called_ae_is_rejected(
    orthanc_factory: Callable[..., OrthancServer], node_settings: Settings
) -> None:
    strict = orthanc_factory(DicomCheckCalledAet=True)
    spec = server_spec(strict, dicomweb=False, ae_title="NOT_ORTHANC")
    with DimseNode(spec, node_settings) as node, pytest.raises(AssociationRejected) as info:
        node.echo()
    assert "rejected" in str(info.value)
    with DimseNode(server_spec(strict, dicomweb=False), node_settings) as node:
        node.echo()


def test_rejecting_scp(node_settings: Settings) -> None:
    port = free_port()
    ae = AE(ae_title="PICKY")
    ae.add_supported_context("1.2.840.10008.1.1")
    ae.require_calling_aet = ["SOMEONE_ELSE"]
    server = ae.start_server(("127.0.0.1", port), block=False)
    try:
        spec = ServerSpec(name="PICKY", ae_title="PICKY", host="127.0.0.1", port=port)
        with DimseNode(spec, node_settings) as node, pytest.raises(AssociationRejected):
            node.echo()
    finally:
        server.shutdown()


# -- C-GET and C-MOVE ------------------------------------------------------------------------
def test_get_a_series(dimse: DimseNode) -> None:
    first = ALL[0]
    received: list[str] = []
    query = Dataset()
    query.StudyInstanceUID = str(first.StudyInstanceUID)
    query.SeriesInstanceUID = str(first.SeriesInstanceUID)
    stream = dimse.get_stream("SERIES", query)
    while True:
        try:
            received.append(str(dcmread(io.BytesIO(next(stream))).SOPInstanceUID))
        except StopIteration as stop:
            result = stop.value
            break
    expected = {
        str(ds.SOPInstanceUID) for ds in ALL if ds.SeriesInstanceUID == first.SeriesInstanceUID
    }
    assert set(received) == expected
    assert (result.status, result.completed, result.failed) == (0, len(expected), 0)


def test_move_to_orthanc2_and_to_an_unknown_destination(
    dimse: DimseNode, orthanc2: OrthancServer
) -> None:
    orthanc2.clear()
    first = ALL[0]
    query = Dataset()
    query.StudyInstanceUID = str(first.StudyInstanceUID)
    result = dimse.move("STUDY", query, orthanc2.ae_title)
    in_study = [ds for ds in ALL if ds.StudyInstanceUID == first.StudyInstanceUID]
    assert result.completed == len(in_study)
    assert orthanc2.statistics()["CountInstances"] == len(in_study)
    with pytest.raises(DicomStatusError) as info:
        dimse.move("STUDY", query, "NOSUCHAET")
    assert info.value.status == 0xC000
    assert info.value.operation == "C-MOVE"
    orthanc2.clear()


def test_messages_carry_no_phi(fake_scp: FakeScp, node_settings: Settings) -> None:
    fake_scp.matches = 0
    fake_scp.final_status = 0xA900
    with DimseNode(fake_scp.spec(), node_settings) as node, pytest.raises(DicomStatusError) as info:
        list(node.find("STUDY", study_query(PatientID="SECRET123", PatientName="DOE^JANE")))
    assert "SECRET123" not in str(info.value) and "DOE" not in str(info.value)


def test_reuse_after_the_server_dropped_an_idle_association(
    fake_scp: FakeScp, node_settings: Settings
) -> None:
    with DimseNode(fake_scp.spec(), node_settings) as node:
        node.echo()
        assert fake_scp.server is not None
        for assoc in fake_scp.server.active_associations:
            assoc.abort()
        node.echo()
        assert len(list(node.find("STUDY", study_query(), limit=2))) == 2
    assert fake_scp.associations == 2


def test_non_ascii_query_declares_its_character_set(dimse: DimseNode) -> None:
    assert (
        _identifier(QueryLevel.PATIENT, study_query(PatientName="Müller*")).get(
            "SpecificCharacterSet"
        )
        == "ISO_IR 100"
    )
    assert (
        _identifier(QueryLevel.PATIENT, study_query(PatientName="Ωmega")).get(
            "SpecificCharacterSet"
        )
        == "ISO_IR 192"
    )
    assert "SpecificCharacterSet" not in _identifier(QueryLevel.STUDY, study_query())
    assert list(dimse.find("STUDY", study_query(PatientName="Müller*"))) == []
