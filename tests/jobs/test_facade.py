"""The facade: wb.transfer from query results, wb.batch_query, wb.jobs (embedded inline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adit_workbench.access import Access
from adit_workbench.config import Settings
from adit_workbench.dicom.query import find_studies
from adit_workbench.jobs import JobStatus
from adit_workbench.store import Database
from adit_workbench.workbench import Workbench


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the facade only wires
def test_transfer_from_query_results_and_batch_query(
    job_settings: Settings, database: Database, alice: Access, tmp_path: Path
) -> None:
    wb = Workbench(job_settings, database, alice)
    hits = find_studies(wb.node("SANDBOX"), patient_id="SYN0002", modality="MR")
    job = wb.transfer(hits, to="OUT", pseudonym="SUBJ-02").wait(60, progress=False)
    assert job.status is JobStatus.SUCCESS
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6
    queries = tmp_path / "q.csv"
    queries.write_text("PatientID,Modality\nSYN0003,CT\n")
    found = wb.batch_query(queries, source="SANDBOX").wait(60, progress=False)
    assert len(found.results.df) == 1
    assert [j.id for j in wb.jobs.list()] == [found.id, job.id]
    assert wb.jobs[job.id].kind == "selective_transfer"
