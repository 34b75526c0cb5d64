"""Filter normalisation and the client-side re-filter (no network)."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from pydicom import Dataset

from adit_workbench.dicom.filters import (
    Level,
    date_range,
    matches,
    normalize,
    parse_date,
    patient_name_pattern,
    wildcard_match,
)
from adit_workbench.errors import InputError


@pytest.mark.parametrize(
    "value",
    [date(2020, 1, 31), datetime(2020, 1, 31, 23, 59), "2020-01-31", "20200131", " 20200131 "],
)
def test_parse_date_accepts_every_form(value: object) -> None:
    assert parse_date(value) == date(2020, 1, 31)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["2020-13-01", "31.13.2020", "2020131", "", "20200230"])
def test_parse_date_rejects_nonsense(value: str) -> None:
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        parse_date(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-01-31", "20200131"),
        (("2020-01-01", "2020-12-31"), "20200101-20201231"),
        ((date(2020, 1, 1), None), "20200101-"),
        (("", "20201231"), "-20201231"),
        ((None, None), ""),
        (("20200105", "20200105"), "20200105"),
        ("20200101-", "20200101-"),
        ("-20201231", "-20201231"),
        ("20200101-20201231", "20200101-20201231"),
        ([datetime(2020, 1, 1, 5), "2020-02-01"], "20200101-20200201"),
    ],
)
def test_date_range_forms(value: object, expected: str) -> None:
    assert date_range(value) == expected  # type: ignore[arg-type]


def test_date_range_rejects_reversed_and_bad_pairs() -> None:
    with pytest.raises(InputError, match="ends before"):
        date_range(("2021-01-01", "2020-01-01"), "study_date")
    with pytest.raises(InputError, match="pair"):
        date_range(("2021-01-01",), "study_date")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typed", "pattern"),
    [
        ("Doe, John", "Doe*^John*"),
        ("Doe,John", "Doe*^John*"),
        ("Doe*, J*", "Doe*^J*"),
        ("Doe,", "Doe*"),
        (", John", "*^John*"),
        ("DOE^JOHN", "DOE^JOHN"),
        ("Do?", "Do?"),
    ],
)
def test_patient_name_comma_form(typed: str, pattern: str) -> None:
    assert patient_name_pattern(typed) == pattern


def test_normalize_maps_named_filters_to_dicom() -> None:
    q = normalize(
        "study",
        patient_id="1001",
        patient_name="Doe, J",
        study_date=("2020-01-01", None),
        birth_date="1970-05-04",
        modality="ct, mr,CT",
        accession_number="",
        study_uid="1.2.3",
        study_time=(time(8, 0), "12:30"),
    )
    assert q.level is Level.STUDY
    assert q.criteria == {
        "PatientID": "1001",
        "PatientName": "Doe*^J*",
        "StudyDate": "20200101-",
        "PatientBirthDate": "19700504",
        "StudyInstanceUID": "1.2.3",
        "StudyTime": "080000-1230",
    }
    assert q.modalities == ("CT", "MR")


def test_normalize_raw_keywords_by_vr() -> None:
    q = normalize("series", ReferringPhysicianName="House*", SeriesDate="2020-01-31")
    assert q.criteria == {"ReferringPhysicianName": "House*", "SeriesDate": "20200131"}


def test_unknown_keyword_is_named() -> None:
    with pytest.raises(InputError, match="'PatientNmae'"):
        normalize("study", PatientNmae="x")


def test_filter_below_the_level_is_refused() -> None:
    with pytest.raises(InputError, match=r"series_description.*series level"):
        normalize("study", series_description="AX*")
    with pytest.raises(InputError, match="sop_instance_uid"):
        normalize("series", sop_instance_uid="1.2")
    with pytest.raises(InputError, match="series_number"):
        normalize("patient", series_number=1)
    # patients are answered at study level, so study attributes narrow them
    assert normalize("patient", modality="CT").modalities == ("CT",)
    assert normalize("patient", study_date="20200101").criteria == {"StudyDate": "20200101"}


def test_bad_values_name_the_filter_not_the_value() -> None:
    with pytest.raises(InputError, match="'study_uid'") as info:
        normalize("study", study_uid="1.2.x-secret")
    assert "secret" not in str(info.value)
    with pytest.raises(InputError, match="'series_number'"):
        normalize("series", series_number="two")
    with pytest.raises(InputError, match="'modality'"):
        normalize("series", modality="C T")
    with pytest.raises(InputError, match="given twice"):
        normalize("study", {"patient_id": "1"}, PatientID="2")
    with pytest.raises(InputError, match="unknown query level"):
        normalize("frame")


def test_series_numbers_one_is_sent_several_only_refilter() -> None:
    assert normalize("series", series_number=3).criteria == {"SeriesNumber": "3"}
    q = normalize("series", series_number=[3, "4"])
    assert q.series_numbers == (3, 4) and "SeriesNumber" not in q.criteria


def test_uid_lists() -> None:
    q = normalize("instance", series_uid=["1.2.3", "1.2.4"], sop_instance_uid="1.5")
    assert q.criteria["SeriesInstanceUID"] == "1.2.3\\1.2.4"


def test_wildcards_ignore_case_and_match_whole_value() -> None:
    assert wildcard_match("doe*^j*", "DOE^JOHN")
    assert wildcard_match("D?E", "doe")
    assert not wildcard_match("DOE", "DOE^JOHN")
    assert wildcard_match("a.b(c)", "A.B(C)")  # regex characters are literal
    assert not wildcard_match("a.b", "axb")


def _ds(**kw: object) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_refilter_names_dates_sex_descriptions() -> None:
    q = normalize(
        "study",
        patient_name="Smith, J",
        study_date=("2020-01-01", "2020-06-30"),
        patient_sex="f",
        study_description="*chest*",
    )
    good = _ds(
        PatientName="SMITH^JANE^^^",
        StudyDate="20200301",
        PatientSex="F",
        StudyDescription="CT CHEST",
    )
    assert matches(q, good)
    assert not matches(q, _ds(PatientName="SMYTH^JANE"))
    assert not matches(q, _ds(StudyDate="20200701"))
    assert not matches(q, _ds(PatientSex="M"))
    assert not matches(q, _ds(StudyDescription="MR HEAD"))
    # attributes the PACS did not return (or returned empty) do not drop the row
    assert matches(q, _ds(PatientName="", StudyDate=""))
    assert matches(q, Dataset())


def test_refilter_open_ranges() -> None:
    assert matches(normalize("study", study_date=("2020-01-01", None)), _ds(StudyDate="20300101"))
    assert not matches(
        normalize("study", study_date=(None, "2019-12-31")), _ds(StudyDate="20200101")
    )
    assert matches(normalize("study", birth_date="1970-01-01"), _ds(PatientBirthDate="19700101"))


def test_refilter_modalities_per_level() -> None:
    study = normalize("study", modality=["MR", "PT"])
    assert matches(study, _ds(ModalitiesInStudy=["CT", "MR"]))
    assert not matches(study, _ds(ModalitiesInStudy=["CT", "SR"]))
    assert matches(study, _ds(ModalitiesInStudy="CT\\PT"))
    series = normalize("series", modality="mr")
    assert matches(series, _ds(Modality="MR"))
    assert not matches(series, _ds(Modality="CT"))


def test_refilter_series_numbers_and_uids() -> None:
    q = normalize("series", series_number=[1, 3], study_uid="1.2.3")
    assert matches(q, _ds(SeriesNumber=3, StudyInstanceUID="1.2.3"))
    assert not matches(q, _ds(SeriesNumber=2))
    assert not matches(q, _ds(StudyInstanceUID="1.2.30"))
    assert matches(normalize("series", series_number=2), _ds(SeriesNumber="2"))


def test_refilter_leaves_raw_keywords_to_the_node() -> None:
    q = normalize("study", ReferringPhysicianName="House*")
    assert matches(q, _ds(ReferringPhysicianName="WILSON^JAMES"))
