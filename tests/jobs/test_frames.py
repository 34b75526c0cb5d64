"""DataFrames in (a filtered Results.df, or any frame with the documented columns) and
one date grammar for the API, the CLI and batch files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from adit_workbench.access import Access
from adit_workbench.config import Settings
from adit_workbench.dicom.filters import date_range, parse_period
from adit_workbench.errors import InputError
from adit_workbench.jobs import JobStatus, defaults, parse_batch_query
from adit_workbench.jobs.kinds import mass_transfer
from adit_workbench.store import Database
from adit_workbench.workbench import Workbench

sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # wiring only


@pytest.fixture
def wb(
    job_settings: Settings, database: Database, alice: Access, monkeypatch: pytest.MonkeyPatch
) -> Workbench:
    monkeypatch.setattr(defaults, "LOCAL_RUNNER", "inline")  # the facade's wiring only
    return Workbench(job_settings, database, alice)


@sqlite
def test_a_filtered_results_frame_is_transferred(wb: Workbench, tmp_path: Path) -> None:
    hits = wb.node("SANDBOX").find_studies(patient_id="SYN0002")
    frame = hits.df
    mask = frame["ModalitiesInStudy"].str.contains("MR")
    job = wb.transfer(frame[mask], to="OUT", pseudonym="SUBJ-02").wait(60, progress=False)
    assert job.status is JobStatus.SUCCESS
    assert len(job.tasks) == 1  # one study, not one task per column name
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6


@sqlite
def test_a_frame_without_the_columns_is_refused_by_name(wb: Workbench) -> None:
    frame = pd.DataFrame({"patient": ["SYN0001"], "when": ["2020"]})
    with pytest.raises(InputError, match=r"needs the column StudyInstanceUID.*has: patient, when"):
        wb.transfer(frame, to="OUT", source="SANDBOX")
    with pytest.raises(InputError, match="does not say which node"):
        wb.transfer(frame, to="OUT")
    with pytest.raises(InputError, match=r"batch query needs at least one of the columns"):
        wb.batch_query(frame, source="SANDBOX")
    with pytest.raises(InputError, match=r"batch transfer needs the column\(s\) PatientID, Study"):
        wb.batch_transfer(frame, source="SANDBOX", to="OUT")
    assert wb.jobs.list() == []


@sqlite
def test_frames_feed_batch_query_and_batch_transfer(wb: Workbench, tmp_path: Path) -> None:
    queries = pd.DataFrame({"patient_id": ["SYN0003"], "Modality": ["CT"]})
    found = wb.batch_query(queries, source="SANDBOX").wait(60, progress=False).results.df
    assert len(found) == 1
    hits = wb.node("SANDBOX").find_studies(patient_id="SYN0003", modality="CT").df
    rows = hits.assign(Pseudonym="SUBJ-03")  # extra columns of Results.df are left out
    job = wb.batch_transfer(rows, source="SANDBOX", to="OUT").wait(60, progress=False)
    assert job.status is JobStatus.SUCCESS and len(job.tasks) == 1


def test_one_date_grammar_with_months_and_years_as_ranges() -> None:
    assert parse_period("2020") == (date(2020, 1, 1), date(2020, 12, 31))
    assert (
        parse_period("2020-02") == parse_period("202002") == (date(2020, 2, 1), date(2020, 2, 29))
    )
    assert parse_period("31.01.2020") == (date(2020, 1, 31), date(2020, 1, 31))
    assert date_range("2020-12") == "20201201-20201231"
    assert date_range(("2019", "2020-06")) == "20190101-20200630"
    with pytest.raises(InputError, match=r"'2020-13' is not a date; expected YYYY-MM-DD"):
        parse_period("2020-13", "study_date")
    items = parse_batch_query(b"PatientID,From,Until,Modality\n1,2020,2020-06,CT\n", name="q.csv")
    assert (items[0].date_from, items[0].date_until) == ("20200101", "20200630")


@sqlite
def test_mass_transfer_takes_a_month(
    wb: Workbench, fake_transfer: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = mass_transfer(
        wb.jobs, source="SANDBOX", destination="OUT", start="2020-02", end="2020-02",
        filters=[{"modality": "CT"}],
    )  # fmt: skip
    assert len(job.tasks) == 29  # one per day of February 2020
    with pytest.raises(InputError, match="'2020-1-x' is not a date"):
        mass_transfer(
            wb.jobs, source="SANDBOX", destination="OUT", start="2020-1-x", end="2020",
            filters=[{"modality": "CT"}],
        )  # fmt: skip
