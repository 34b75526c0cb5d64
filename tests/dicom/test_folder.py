"""The folder node: C-FIND-like matching over the files' headers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import Dataset

from adit_workbench.dicom.folder import FolderNode, matches
from adit_workbench.errors import NodeError, NodeUnreachable
from tests.dicom.conftest import archive_datasets, folder_spec, study_query

ALL = archive_datasets()


def _header(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"PatientID": ""}, True),
        ({"PatientID": "P1"}, True),
        ({"PatientID": "P2"}, False),
        ({"PatientID": "P*"}, True),
        ({"PatientID": "?1"}, True),
        ({"PatientName": "doe*"}, True),
        ({"StudyDate": "20200101-20201231"}, True),
        ({"StudyDate": "20210101-"}, False),
        ({"StudyDate": "-20200615"}, True),
        ({"StudyTime": "1000-1300"}, True),
    ],
)
def test_matching_rules(query: dict[str, str], expected: bool) -> None:
    header = _header(
        PatientID="P1", PatientName="DOE^JANE", StudyDate="20200615", StudyTime="120000"
    )
    assert matches(header, _header(**query)) is expected


def test_uid_list_matches_any() -> None:
    query = Dataset()
    query.StudyInstanceUID = ["1.2", "1.3"]
    assert matches(_header(StudyInstanceUID="1.3"), query)
    assert not matches(_header(StudyInstanceUID="1.4"), query)


def test_modalities_in_study_and_counts(archive_folder: Path) -> None:
    node = FolderNode(folder_spec(archive_folder))
    query = study_query(ModalitiesInStudy="MR")
    query.NumberOfStudyRelatedInstances = ""
    found = list(node.find("STUDY", query))
    expected = {str(ds.StudyInstanceUID) for ds in ALL if ds.Modality == "MR"}
    assert {str(ds.StudyInstanceUID) for ds in found} == expected
    assert all(ds.ModalitiesInStudy == "MR" for ds in found)
    assert all(ds.NumberOfStudyRelatedInstances == 4 for ds in found)


def test_non_dicom_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not DICOM")
    node = FolderNode(folder_spec(tmp_path))
    assert list(node.find("STUDY", study_query())) == []


def test_echo_missing_and_read_only(tmp_path: Path) -> None:
    with pytest.raises(NodeUnreachable):
        FolderNode(folder_spec(tmp_path / "missing")).echo()
    with pytest.raises(NodeUnreachable):
        list(FolderNode(folder_spec(tmp_path / "missing")).find("STUDY", study_query()))
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere: the read-only case cannot be shown")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(NodeError):
            FolderNode(folder_spec(tmp_path)).echo()
    finally:
        tmp_path.chmod(0o700)
