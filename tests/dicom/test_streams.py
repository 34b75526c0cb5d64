"""Retrieve and store streams, parametrized over C-GET/C-STORE, WADO/STOW and folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE, evt

from adit_workbench.config import Settings
from adit_workbench.dicom.association import GET_STORAGE_SOP_CLASSES, QR_MODELS
from adit_workbench.dicom.dicomweb import DicomWebNode
from adit_workbench.dicom.dimse import DimseNode
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.node import RetrieveNode, StoreNode
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import ServerSpec
from adit_workbench.errors import InputError, TransferError
from tests.dicom.conftest import archive_datasets, folder_spec, server_spec, study_query
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.orthanc

ALL = archive_datasets()
FIRST = ALL[0]
KINDS = ["dimse", "dicomweb", "folder"]


@pytest.fixture(params=KINDS)
def source(
    request: pytest.FixtureRequest,
    loaded_orthanc: OrthancServer,
    archive_folder: Path,
    node_settings: Settings,
) -> Iterator[RetrieveNode]:
    node: RetrieveNode
    if request.param == "dimse":
        node = DimseNode(server_spec(loaded_orthanc, dicomweb=False), node_settings)
    elif request.param == "dicomweb":
        node = DicomWebNode(server_spec(loaded_orthanc, dimse=False), node_settings)
    else:
        node = FolderNode(folder_spec(archive_folder))
    yield node
    node.close()


@pytest.fixture(params=KINDS)
def destination(
    request: pytest.FixtureRequest, orthanc2: OrthancServer, tmp_path: Path, node_settings: Settings
) -> Iterator[StoreNode]:
    orthanc2.clear()
    node: StoreNode
    if request.param == "dimse":
        node = DimseNode(server_spec(orthanc2, dicomweb=False), node_settings)
    elif request.param == "dicomweb":
        node = DicomWebNode(server_spec(orthanc2, dimse=False), node_settings)
    else:
        node = FolderNode(folder_spec(tmp_path / "out"))
        (tmp_path / "out").mkdir()
    yield node
    node.close()
    orthanc2.clear()


def _query(level: str, ds: Dataset) -> Dataset:
    query = Dataset()
    query.PatientID = str(ds.PatientID)
    if level in ("STUDY", "SERIES", "IMAGE"):
        query.StudyInstanceUID = str(ds.StudyInstanceUID)
    if level in ("SERIES", "IMAGE"):
        query.SeriesInstanceUID = str(ds.SeriesInstanceUID)
    if level == "IMAGE":
        query.SOPInstanceUID = str(ds.SOPInstanceUID)
    return query


@pytest.mark.parametrize(
    ("level", "same"),
    [
        ("PATIENT", lambda ds: ds.PatientID == FIRST.PatientID),
        ("STUDY", lambda ds: ds.StudyInstanceUID == FIRST.StudyInstanceUID),
        ("SERIES", lambda ds: ds.SeriesInstanceUID == FIRST.SeriesInstanceUID),
        ("IMAGE", lambda ds: ds.SOPInstanceUID == FIRST.SOPInstanceUID),
    ],
)
def test_retrieve_each_level(source: RetrieveNode, level: str, same: object) -> None:
    assert isinstance(source, RetrieveNode)
    expected = {str(ds.SOPInstanceUID) for ds in ALL if same(ds)}  # type: ignore[operator]
    root = "patient" if level == "PATIENT" else None
    got = list(source.retrieve(level, _query(level, FIRST), root=root))
    assert {str(ds.SOPInstanceUID) for ds in got} == expected
    assert all("PixelData" in ds for ds in got)
    assert all(ds.file_meta.TransferSyntaxUID for ds in got)


def test_stopping_a_retrieve_early_keeps_the_node_usable(source: RetrieveNode) -> None:
    stream = source.retrieve("STUDY", _query("STUDY", FIRST))
    assert next(stream).SOPInstanceUID
    stream.close()  # type: ignore[attr-defined]
    source.echo()
    assert list(source.retrieve("IMAGE", _query("IMAGE", FIRST)))


def test_store_datasets_and_files(destination: StoreNode, archive_folder: Path) -> None:
    assert isinstance(destination, StoreNode)
    in_study = [ds for ds in ALL if ds.StudyInstanceUID == FIRST.StudyInstanceUID]
    files = sorted(archive_folder.rglob("*.dcm"))[:2]
    result = destination.store([*in_study, *files])
    assert result.ok and result.stored == len(in_study) + len(files), result.failed
    found = destination.find("IMAGE", _image_query())
    expected = {str(ds.SOPInstanceUID) for ds in in_study}
    expected |= {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert {str(ds.SOPInstanceUID) for ds in found} == expected


def _image_query() -> Dataset:
    query = Dataset()
    query.StudyInstanceUID = ""
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    return query


def test_c_store_reports_refused_instances(
    orthanc2: OrthancServer, node_settings: Settings
) -> None:
    odd = archive_datasets()[0].copy()
    odd.SOPClassUID = "1.2.3.4.5.6.7"  # no storage context proposed for it
    odd.file_meta.MediaStorageSOPClassUID = odd.SOPClassUID
    with DimseNode(server_spec(orthanc2, dicomweb=False), node_settings) as node:
        result = node.store([odd, ALL[1]])
    assert result.stored == 1 and list(result.failed) == [str(odd.SOPInstanceUID)]
    with pytest.raises(TransferError, match="1 of 2 instances were refused"):
        result.raise_for_failures()
    orthanc2.clear()


def test_server_copies_a_study_from_orthanc1_to_orthanc2(
    loaded_orthanc: OrthancServer, orthanc2: OrthancServer, node_settings: Settings
) -> None:
    orthanc2.clear()
    with (
        DicomServer(server_spec(loaded_orthanc), node_settings) as source,
        DicomServer(server_spec(orthanc2), node_settings) as target,
    ):
        result = target.store(source.retrieve("STUDY", _query("STUDY", FIRST)))
        assert result.ok
        expected = sum(1 for ds in ALL if ds.StudyInstanceUID == FIRST.StudyInstanceUID)
        assert result.stored == expected == orthanc2.statistics()["CountInstances"]
        hits = list(target.find("STUDY", study_query(), via="dicomweb"))
        assert [str(ds.StudyInstanceUID) for ds in hits] == [str(FIRST.StudyInstanceUID)]
    orthanc2.clear()


def test_wado_needs_uids(loaded_orthanc: OrthancServer, node_settings: Settings) -> None:
    with DicomWebNode(server_spec(loaded_orthanc, dimse=False), node_settings) as node:
        with pytest.raises(InputError):
            list(node.retrieve("STUDY", Dataset()))
        with pytest.raises(InputError):
            list(node.retrieve("PATIENT", Dataset()))


def test_stopping_a_c_get_sends_c_cancel(node_settings: Settings) -> None:
    port = free_port()
    cancelled: list[bool] = []
    datasets = archive_datasets()

    def handle_get(event: Any) -> Iterator[Any]:
        yield len(datasets)
        for ds in datasets:
            if event.is_cancelled:
                cancelled.append(True)
                yield 0xFE00, None
                return
            yield 0xFF00, ds

    ae = AE(ae_title="GETSCP")
    ae.add_supported_context(QR_MODELS["study", "get"])
    ae.add_supported_context("1.2.840.10008.1.1")
    for uid in GET_STORAGE_SOP_CLASSES:
        ae.add_supported_context(uid, scu_role=False, scp_role=True)
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_GET, handle_get)]
    )
    try:
        spec = ServerSpec(name="GETSCP", ae_title="GETSCP", host="127.0.0.1", port=port)
        with DimseNode(spec, node_settings) as node:
            stream = node.retrieve("STUDY", _query("STUDY", FIRST))
            first = [next(stream), next(stream)]
            stream.close()  # type: ignore[attr-defined]
            assert all(ds.SOPInstanceUID for ds in first)
            assert cancelled == [True]
            assert len(list(node.retrieve("STUDY", _query("STUDY", FIRST)))) == len(datasets)
    finally:
        server.shutdown()
