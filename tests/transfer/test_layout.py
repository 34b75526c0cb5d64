"""ADIT's folder layout, and that no DICOM value can steer a path."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from adit_workbench.transfer.layout import (
    InstanceInfo,
    relative_path,
    sanitize,
    series_folder,
    study_folder,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("../../etc", "_.._etc"),
        ("..", "Undefined"),
        (".", "Undefined"),
        (".hidden", "hidden"),
        ("a/b\\c", "a_b_c"),
        ('x<>:"|?*y', "x_______y"),
        ("line\nbreak\ttab\x00nul", "line_break_tab_nul"),
        ("right\u202eleft", "right_left"),
        ("", "Undefined"),
        (None, "Undefined"),
        ("  spaced  ", "spaced"),
        ("CT Thorax 1.0 B31f", "CT Thorax 1.0 B31f"),
        ("Müller", "Müller"),
    ],
)
def test_sanitize(value: object, expected: str) -> None:
    assert sanitize(value) == expected


def test_sanitize_caps_length() -> None:
    assert len(sanitize("x" * 500)) == 120


def test_study_and_series_folders() -> None:
    assert study_folder("20240102", "101530.123", ["MR", "CT", "CT"]) == "20240102-101530-CT,MR"
    assert study_folder("", "", []) == "00000000-000000"
    assert study_folder("20240102", "9", ["SR"]) == "20240102-900000-SR"
    assert series_folder("3", "T1 / axial", "1.2.3") == "3-T1 _ axial"
    assert series_folder("3", "", "1.2.3") == "3-Undefined"
    assert series_folder("", "anything", "1.2.3") == "1.2.3"


def _info(**changes: str) -> InstanceInfo:
    fields = {
        "source_sop": "1.2.9",
        "sop_uid": "1.2.9",
        "sop_class": "1.2.840.10008.5.1.4.1.1.2",
        "series_uid": "1.2.8",
        "study_uid": "1.2.7",
        "patient_id": "PAT1",
        "modality": "CT",
        "series_number": "2",
        "series_description": "Head",
        "study_date": "20200101",
        "study_time": "120000",
        "staged": "/tmp/x.dcm",
        "size": 1,
    }
    fields.update(changes)
    return InstanceInfo(**fields)  # type: ignore[arg-type]


def test_relative_path_is_adit_layout() -> None:
    assert relative_path(_info(), {"CT"}) == PurePosixPath(
        "PAT1/20200101-120000-CT/2-Head/1.2.9.dcm"
    )


def test_crafted_values_cannot_escape_the_job_folder() -> None:
    path = relative_path(
        _info(patient_id="../..", series_description="../../../root", sop_uid="../x"), {"CT"}
    )
    assert ".." not in path.parts and not path.is_absolute()
    assert len(path.parts) == 4
