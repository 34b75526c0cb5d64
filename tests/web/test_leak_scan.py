"""``job.leak_scan()`` on both workbenches: the delivered files of a finished
pseudonymized transfer are scanned against a fresh fetch of the originals (locally, or
by the service at ``/api/jobs/{id}/leak-scan``), for the owner or staff only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from adit_workbench.deid.leaks import LeakReport
from adit_workbench.errors import InputError, NotFound, PermissionDenied
from adit_workbench.jobs import JobStatus
from tests.web.conftest import People, Running

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _delivered(wb: Any) -> Any:
    hits = wb.node("SANDBOX").find_studies(patient_id="SYN0003", modality="CT")
    job = wb.transfer(hits, to="OUT", pseudonym="LEAK-03").wait(120, progress=False)
    assert job.status is JobStatus.SUCCESS
    return job


def test_a_clean_transfer_scans_clean_and_a_planted_leak_is_found(
    wb_for: Callable[[str], Any], tmp_path: Path
) -> None:
    wb = wb_for("alice")
    job = _delivered(wb)
    report = job.leak_scan()
    assert isinstance(report, LeakReport) and report.clean, str(report)
    assert report.files_scanned == 6 and report.values_collected > 0
    assert "clean" in report.summary() and report._repr_html_()

    # The original PatientID planted into a delivered file, as a careless tool would.
    [first, *_] = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    ds = dcmread(first)
    ds.ImageComments = "SYN0003"
    ds.save_as(first)
    leaked = job.leak_scan()
    assert not leaked.clean and "id" in leaked.by_kind()
    assert all("SYN0003" not in x.masked for x in leaked.leaks)  # values stay masked
    assert all(not x.file.startswith(str(tmp_path)) for x in leaked.leaks)  # no server paths


def test_only_finished_pseudonymized_transfers(
    wb_for: Callable[[str], Any], tmp_path: Path
) -> None:
    wb = wb_for("alice")
    queries = tmp_path / "q.csv"
    queries.write_text("PatientID,Modality\nSYN0001,CT\n")
    found = wb.batch_query(queries, source="SANDBOX").wait(60, progress=False)
    with pytest.raises(InputError, match="only transfers deliver files"):
        found.leak_scan()


def test_owner_or_staff_only(wb_for: Callable[[str], Any], people: People) -> None:
    job = _delivered(wb_for("alice"))
    assert wb_for("sam").jobs.get(job.id).leak_scan().clean  # staff
    with pytest.raises((NotFound, PermissionDenied)):
        wb_for("nina").jobs.get(job.id).leak_scan()


def test_route_answers_the_masked_report(
    service: Running, people: People, wb_for: Callable[[str], Any]
) -> None:
    job = _delivered(wb_for("alice"))
    answer = service.session(people.token("alice")).get(
        f"{service.url}api/jobs/{job.id}/leak-scan", params={"ignore": ["date"]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["clean"] is True and body["files_scanned"] == 6 and body["leaks"] == []
    bad = service.session(people.token("alice")).get(
        f"{service.url}api/jobs/{job.id}/leak-scan", params={"ignore": ["colour"]}
    )
    assert bad.status_code == 400 and "unknown leak kinds" in bad.json()["message"]
    assert service.session(people.token("nina")).get(
        f"{service.url}api/jobs/{job.id}/leak-scan"
    ).status_code in (403, 404)
