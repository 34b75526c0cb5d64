"""Batch query against the sandbox PACS on both backends and both databases: results,
failures in the export, and the export used directly as a batch-transfer file."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import load_workbook

from adit_workbench.access import Access
from adit_workbench.jobs import JobStatus, parse_batch_transfer
from adit_workbench.jobs.kinds import batch_query

from .conftest import Harness

FILE = (
    "PatientID,Modality,SeriesNumber,Pseudonym\n"
    "SYN0001,CT,,SUBJ-1\n"
    "SYN0002,MR,1,SUBJ-2\n"
    "NOPE999,CT,,SUBJ-3\n"
)


@pytest.fixture
def finished(harness: Harness, alice: Access, tmp_path: Path) -> tuple[Harness, int]:
    path = tmp_path / "queries.csv"
    path.write_text(FILE)
    job = batch_query(harness.manager(alice), path, source="SANDBOX", project_name="P1")
    harness.drain()
    job.wait(30, progress=False)
    return harness, job.id


def test_rows_become_results_and_failures_show(
    finished: tuple[Harness, int], alice: Access
) -> None:
    harness, job_id = finished
    job = harness.manager(alice).get(job_id)
    assert job.status is JobStatus.WARNING  # one query found nothing
    tasks = job.tasks
    assert tasks["lines"].tolist() == ["2", "3", "4"]
    assert tasks["status"].tolist() == ["SUCCESS", "SUCCESS", "WARNING"]
    assert tasks["message"].tolist()[2] == "No studies found."
    df = job.results.df
    by_line = {line: group for line, group in df.groupby("Line")}
    ct = by_line["2"]
    assert len(ct) == 1 and ct["ModalitiesInStudy"].iloc[0] == "CT"
    assert ct["PatientID"].iloc[0] == "SYN0001" and ct["Pseudonym"].iloc[0] == "SUBJ-1"
    mr = by_line["3"]
    assert len(mr) == 1 and mr["SeriesNumber"].iloc[0] == "1" and mr["SeriesInstanceUID"].iloc[0]
    missing = by_line["4"]
    assert missing["Status"].iloc[0] == "WARNING" and missing["StudyInstanceUID"].iloc[0] == ""


def test_export_is_a_batch_transfer_file(
    finished: tuple[Harness, int], alice: Access, tmp_path: Path
) -> None:
    harness, job_id = finished
    job = harness.manager(alice).get(job_id)
    xlsx = job.export(tmp_path / "results.xlsx")
    csv = job.results.to_csv(tmp_path / "results.csv")
    sheet = load_workbook(xlsx).active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["Line", "Pseudonym", "PatientID"]
    assert all(c.data_type == "s" for c in sheet[2] if c.value is not None)  # text: zeros kept
    for path in (xlsx, csv):
        items = parse_batch_transfer(path)
        assert sorted(i.pseudonym for i in items) == ["SUBJ-1", "SUBJ-2"]
        series = {i.pseudonym: i.series_uids for i in items}
        assert series["SUBJ-1"] == () and len(series["SUBJ-2"]) == 1
