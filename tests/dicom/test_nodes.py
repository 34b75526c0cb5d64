"""Behaviour shared by every node implementation: DIMSE, DICOMweb, composite server, folder.

The same archive is on ORTHANC1 and in a folder, so every implementation must find the
same patients, studies, series and instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset

from adit_workbench.config import Settings
from adit_workbench.dicom.dicomweb import DicomWebNode
from adit_workbench.dicom.dimse import DimseNode
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.node import Node, open_node
from adit_workbench.dicom.server import DicomServer
from tests.dicom.conftest import (
    ARCHIVE,
    archive_datasets,
    folder_spec,
    server_spec,
    study_query,
)
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.orthanc

KINDS = ["dimse", "dicomweb", "server", "folder"]


@pytest.fixture(params=KINDS)
def node(
    request: pytest.FixtureRequest,
    loaded_orthanc: OrthancServer,
    archive_folder: Path,
    node_settings: Settings,
) -> Iterator[Node]:
    kind = request.param
    made: Node
    if kind == "dimse":
        made = DimseNode(server_spec(loaded_orthanc, dicomweb=False), node_settings)
    elif kind == "dicomweb":
        made = DicomWebNode(server_spec(loaded_orthanc, dimse=False), node_settings)
    elif kind == "server":
        made = open_node(server_spec(loaded_orthanc), node_settings)
    else:
        made = open_node(folder_spec(archive_folder), node_settings)
    yield made
    made.close()


def _uids(results: Iterator[Dataset], key: str) -> set[str]:
    return {str(ds.get(key, "")) for ds in results}


ALL = archive_datasets()


def test_implements_the_protocol(node: Node) -> None:
    assert isinstance(node, Node)
    assert node.name


def test_echo(node: Node) -> None:
    node.echo()


def test_find_studies_same_on_every_node(node: Node) -> None:
    expected = {str(ds.StudyInstanceUID) for ds in ALL}
    found = list(node.find("STUDY", study_query()))
    assert _uids(iter(found), "StudyInstanceUID") == expected
    assert len(found) == ARCHIVE["patients"] * ARCHIVE["studies"]


def test_find_studies_by_patient_id_wildcard(node: Node) -> None:
    expected = {str(ds.StudyInstanceUID) for ds in ALL if ds.PatientID == "NODE0002"}
    found = node.find("STUDY", study_query(PatientID="NODE*2"))
    assert _uids(found, "StudyInstanceUID") == expected


def test_find_studies_by_date_range(node: Node) -> None:
    dates = sorted({str(ds.StudyDate) for ds in ALL})
    low, high = dates[1], dates[-2]
    expected = {str(ds.StudyInstanceUID) for ds in ALL if low <= ds.StudyDate <= high}
    found = node.find("STUDY", study_query(StudyDate=f"{low}-{high}"))
    assert _uids(found, "StudyInstanceUID") == expected


def test_find_series_of_a_study(node: Node) -> None:
    study = str(ALL[0].StudyInstanceUID)
    expected = {str(ds.SeriesInstanceUID) for ds in ALL if ds.StudyInstanceUID == study}
    query = Dataset()
    query.StudyInstanceUID = study
    query.SeriesInstanceUID = ""
    query.Modality = ""
    found = list(node.find("SERIES", query))
    assert _uids(iter(found), "SeriesInstanceUID") == expected
    assert {str(ds.Modality) for ds in found} == {str(ALL[0].Modality)}


def test_find_instances_of_a_series(node: Node) -> None:
    first = ALL[0]
    expected = {
        str(ds.SOPInstanceUID) for ds in ALL if ds.SeriesInstanceUID == first.SeriesInstanceUID
    }
    query = Dataset()
    query.StudyInstanceUID = str(first.StudyInstanceUID)
    query.SeriesInstanceUID = str(first.SeriesInstanceUID)
    query.SOPInstanceUID = ""
    assert _uids(node.find("IMAGE", query), "SOPInstanceUID") == expected


def test_find_patients(node: Node) -> None:
    query = Dataset()
    query.PatientID = "NODE*"
    query.PatientName = ""
    found = list(node.find("PATIENT", query))
    assert _uids(iter(found), "PatientID") == {str(ds.PatientID) for ds in ALL}


@pytest.mark.parametrize("limit", [0, 1, 4])
def test_limit(node: Node, limit: int) -> None:
    assert len(list(node.find("STUDY", study_query(), limit=limit))) == limit


def test_no_match_is_empty_not_an_error(node: Node) -> None:
    assert list(node.find("STUDY", study_query(PatientID="NOBODY"))) == []


def test_stopping_early_leaves_the_node_usable(node: Node) -> None:
    stream = node.find("IMAGE", _image_query())
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert len(list(node.find("IMAGE", _image_query()))) == len(ALL)


def _image_query() -> Dataset:
    query = Dataset()
    query.StudyInstanceUID = ""
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    return query


def test_open_node_picks_the_implementation(
    loaded_orthanc: OrthancServer, archive_folder: Path, node_settings: Settings
) -> None:
    with open_node(server_spec(loaded_orthanc), node_settings) as server:  # type: ignore[attr-defined]
        assert isinstance(server, DicomServer)
        assert server.dimse is not None and server.dicomweb is not None
    only_web = open_node(server_spec(loaded_orthanc, dimse=False), node_settings)
    assert isinstance(only_web, DicomServer) and only_web.dimse is None
    assert isinstance(open_node(folder_spec(archive_folder), node_settings), FolderNode)
