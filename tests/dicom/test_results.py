"""Result objects and collections: attributes, DataFrame columns and dtypes, reprs."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from pydicom import Dataset

from adit_workbench.dicom.filters import Level
from adit_workbench.dicom.results import COLUMNS, Instance, Patient, Results, Series, Study


def _study_ds(uid: str = "1.2.3", **extra: object) -> Dataset:
    ds = Dataset()
    ds.PatientID = "P1"
    ds.PatientName = "DOE^JANE"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = uid
    ds.StudyDate = "20200131"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "A1"
    ds.StudyDescription = "CT CHEST"
    ds.ModalitiesInStudy = ["CT", "SR"]
    ds.NumberOfStudyRelatedSeries = 2
    ds.NumberOfStudyRelatedInstances = "10"
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


def test_study_from_dataset() -> None:
    study = Study.from_dataset(_study_ds())
    assert study.study_uid == "1.2.3" and study.patient_name == "DOE^JANE"
    assert study.birth_date == date(1970, 1, 1) and study.study_date == date(2020, 1, 31)
    assert study.modalities == ("CT", "SR") and study.instance_count == 10
    assert "identifier" not in repr(study) and study.identifier.AccessionNumber == "A1"


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_missing_and_odd_values_become_empty() -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2"
    ds.StudyDate = "2020"
    ds.NumberOfStudyRelatedInstances = ""
    ds.ModalitiesInStudy = "CT\\MR"
    study = Study.from_dataset(ds)
    assert study.study_date is None and study.instance_count is None
    assert study.patient_id == "" and study.modalities == ("CT", "MR")


def test_navigation_without_a_node_says_why() -> None:
    with pytest.raises(ValueError, match="not found on a node"):
        Study.from_dataset(_study_ds()).series()


def test_equality_ignores_node_and_identifier() -> None:
    a = Study.from_dataset(_study_ds(), node=object())  # type: ignore[arg-type]
    b = Study.from_dataset(_study_ds())
    assert a == b and hash(a) == hash(b)


@pytest.mark.parametrize("level", list(Level))
def test_empty_results_have_the_documented_columns(level: Level) -> None:
    frame = Results([], level).df
    assert list(frame.columns) == list(COLUMNS[level]) and len(frame) == 0


def test_study_frame_dtypes() -> None:
    results = Results(
        [Study.from_dataset(_study_ds("1.1")), Study.from_dataset(_study_ds("1.2", StudyDate=""))],
        Level.STUDY,
    )
    frame = results.df
    assert list(frame.columns) == list(COLUMNS[Level.STUDY])
    assert pd.api.types.is_datetime64_any_dtype(frame["StudyDate"])
    assert pd.isna(frame["StudyDate"][1]) and frame["StudyDate"][0] == pd.Timestamp("2020-01-31")
    assert str(frame["NumberOfStudyRelatedInstances"].dtype) == "Int64"
    assert frame["ModalitiesInStudy"][0] == "CT,SR"
    assert frame.attrs["truncated"] is False


def test_series_instance_patient_rows() -> None:
    s = Dataset()
    s.StudyInstanceUID, s.SeriesInstanceUID, s.Modality = "1.2", "1.2.3", "MR"
    s.SeriesNumber, s.SeriesDescription = "4", "T2 AX"
    series = Series.from_dataset(s)
    assert series.series_number == 4 and series.row()["SeriesDescription"] == "T2 AX"
    i = Dataset()
    i.SOPInstanceUID, i.InstanceNumber = "1.2.3.4", 7
    assert Instance.from_dataset(i).row()["InstanceNumber"] == 7
    p = Patient.from_dataset(_study_ds())
    assert p.row()["PatientSex"] == "F" and p.study_count is None
    frame = Results([series], Level.SERIES).df
    assert str(frame["SeriesNumber"].dtype) == "Int64"


def test_list_behaviour_and_reprs() -> None:
    items = [Study.from_dataset(_study_ds(f"1.{n}")) for n in range(12)]
    results = Results(items, Level.STUDY, node_name="PACS", route="C-FIND study root")
    assert len(results) == 12 and results[1].study_uid == "1.1"
    assert isinstance(results[:3], Results) and len(results[:3]) == 3
    text = repr(results)
    assert text.startswith("12 studies on PACS (C-FIND study root)") and "2 more" in text
    assert "TRUNCATED" not in text
    html = results._repr_html_()
    assert "<table" in html and "12 studies" in html


def test_truncated_results_say_so_everywhere() -> None:
    results = Results(
        [Study.from_dataset(_study_ds())], Level.STUDY, truncated=True, limit=1, node_name="PACS"
    )
    assert "TRUNCATED at 1" in repr(results)
    assert "TRUNCATED at 1" in results._repr_html_()
    assert results.df.attrs["truncated"] is True
