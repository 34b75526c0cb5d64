"""Transfer jobs with the real transfer layer: sandbox PACS → folder, pseudonymized, on both
backends and both databases; batch transfer from a batch-query export; mass transfer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydicom
from sqlalchemy import update

from adit_workbench.access import Access, Permission
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.query import find_studies
from adit_workbench.jobs import JobStatus
from adit_workbench.jobs.kinds import batch_query, batch_transfer, mass_transfer, selective_transfer
from adit_workbench.store import nodes as node_store
from adit_workbench.store.models import DicomServer

from .conftest import Harness

INSTANCES_PER_STUDY = 6  # 2 series x 3 instances


def _dicom_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if p.is_file())


def _studies(harness: Harness, **filters: Any) -> list[Any]:
    with harness.database.session() as session:
        spec = node_store.get_node(session, "SANDBOX")
    node = open_node(spec, harness.settings)
    try:
        return list(find_studies(node, **filters))
    finally:
        node.close()


def test_selective_transfer_pseudonymizes_into_the_folder(
    harness: Harness, alice: Access, tmp_path: Path
) -> None:
    studies = _studies(harness, patient_id="SYN0001")
    assert len(studies) == 2
    job = selective_transfer(
        harness.manager(alice), studies, source="SANDBOX", destination="OUT",
        pseudonym="SUBJ-01", trial_protocol_id="T1",
    )  # fmt: skip
    harness.drain()
    assert job.wait(60, progress=False).status is JobStatus.SUCCESS, job.tasks["message"]
    files = _dicom_files(tmp_path / "out")
    assert len(files) == 2 * INSTANCES_PER_STUDY
    for path in files[:3]:
        ds = pydicom.dcmread(path)
        assert ds.PatientID == "SUBJ-01" and ds.ClinicalTrialProtocolID == "T1"
    assert all("SYN0001" not in str(p) for p in files)
    assert f"adit_selective_transfer_{job.id}_" in str(files[0])
    assert job.progress.items_done >= INSTANCES_PER_STUDY


def test_batch_query_export_feeds_a_batch_transfer(
    harness: Harness, alice: Access, tmp_path: Path
) -> None:
    jobs = harness.manager(alice)
    queries = tmp_path / "q.csv"
    queries.write_text("PatientID,Modality,Pseudonym\nSYN0002,CT,S2\nSYN0003,MR,S3\n")
    found = batch_query(jobs, queries, source="SANDBOX")
    harness.drain()
    export = found.wait(30, progress=False).export(tmp_path / "found.xlsx")
    job = batch_transfer(jobs, export, source="SANDBOX", destination="OUT", project_name="P1")
    harness.drain()
    assert job.wait(60, progress=False).status is JobStatus.SUCCESS, job.tasks["message"]
    files = _dicom_files(tmp_path / "out")
    assert len(files) == 2 * INSTANCES_PER_STUDY
    assert {pydicom.dcmread(p).PatientID for p in files} == {"S2", "S3"}


def test_mass_transfer_discovers_filters_and_records_each_series(
    harness: Harness,
    make_user: Callable[..., Access],
    tmp_path: Path,
) -> None:
    carol = make_user("carol", Permission.MASS_TRANSFER, Permission.TRANSFER_UNPSEUDONYMIZED)
    studies = _studies(harness)
    first_ct = min(s.study_date for s in studies if "CT" in s.modalities)
    in_range = [s for s in studies if first_ct <= s.study_date <= first_ct + timedelta(days=13)]
    ct_series = 2 * sum("CT" in s.modalities for s in in_range)
    with harness.database.session() as session:  # a small result cap (a study has 2 series)
        session.execute(update(DicomServer).values(max_search_results=2))
    job = mass_transfer(
        harness.manager(carol), source="SANDBOX", destination="OUT",
        start=first_ct, end=first_ct + timedelta(days=13), granularity="weekly",
        filters=[{"modality": "CT"}],
    )  # fmt: skip
    harness.drain()
    job.wait(120, progress=False, raise_on_failure=False)
    table = job.results.df
    assert set(table["modality"]) == {"CT"}
    assert len(table) == ct_series
    assert len(job.tasks) == 2  # two weekly partitions
    assert set(table["status"]) == {"exported"}, job.tasks["message"].tolist()
    assert job.status is JobStatus.SUCCESS
    mapping = job.results.pseudonym_map(tmp_path / "map.csv")
    text = mapping.read_text()
    assert "SYN000" in text and "patient_id" in text
