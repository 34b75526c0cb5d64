"""Idempotence across jobs: the same study sent twice to one folder destination with the
same pseudonym is one copy; the second job reports the instances as already there. The
same study under another pseudonym is another patient's copy and is delivered in full.
Real jobs, the real transfer layer, the sandbox PACS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest

from adit_workbench.access import Access
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.query import find_studies
from adit_workbench.jobs import JobStatus
from adit_workbench.jobs.kinds import selective_transfer
from adit_workbench.store import nodes as node_store

from .conftest import Harness

INSTANCES_PER_STUDY = 6  # 2 series x 3 instances (conftest's seed)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if p.is_file())


def _study(harness: Harness) -> Any:
    with harness.database.session() as session:
        spec = node_store.get_node(session, "SANDBOX")
    node = open_node(spec, harness.settings)
    try:
        return next(iter(find_studies(node, patient_id="SYN0002")))
    finally:
        node.close()


def _send(harness: Harness, who: Access, study: Any, pseudonym: str) -> Any:
    job = selective_transfer(
        harness.manager(who), [study], source="SANDBOX", destination="OUT", pseudonym=pseudonym
    )
    harness.drain()
    assert job.wait(60, progress=False).status is JobStatus.SUCCESS, job.tasks["message"]
    return job


@pytest.mark.parametrize("harness", ["inline"], indirect=True)
def test_the_same_study_and_pseudonym_twice_is_one_copy(
    harness: Harness, alice: Access, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    study = _study(harness)
    first = _send(harness, alice, study, "SUBJ-A")
    delivered = _files(out)
    assert len(delivered) == INSTANCES_PER_STUDY
    before = {p: p.stat().st_mtime_ns for p in delivered}

    second = _send(harness, alice, study, "SUBJ-A")
    assert second.id != first.id
    assert _files(out) == delivered, "a second full copy in the second job's folder"
    assert {p: p.stat().st_mtime_ns for p in delivered} == before  # not rewritten either
    [message] = list(second.tasks["message"])
    assert f"{INSTANCES_PER_STUDY} already there" in message, message

    # Another pseudonym: the same source UIDs give the same pseudonymized UIDs (one
    # project key), but it is another subject's copy: delivered in full, in its own job
    # folder, carrying its own PatientID.
    third = _send(harness, alice, study, "SUBJ-B")
    mine = [p for p in _files(out) if f"adit_selective_transfer_{third.id}_" in str(p)]
    assert len(mine) == INSTANCES_PER_STUDY
    assert {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in mine} == {"SUBJ-B"}
    [message] = list(third.tasks["message"])
    assert "already there" not in message, message


@pytest.mark.parametrize("harness", ["inline"], indirect=True)
def test_a_partial_copy_elsewhere_is_completed_not_duplicated(
    harness: Harness, alice: Access, tmp_path: Path
) -> None:
    """Instances missing from the other job's folder are delivered; the rest are not."""
    out = tmp_path / "out"
    study = _study(harness)
    _send(harness, alice, study, "SUBJ-C")
    delivered = _files(out)
    gone = delivered[:2]
    for path in gone:
        path.unlink()
    second = _send(harness, alice, study, "SUBJ-C")
    now = _files(out)
    assert len(now) == INSTANCES_PER_STUDY
    added = [p for p in now if f"adit_selective_transfer_{second.id}_" in str(p)]
    assert sorted(p.name for p in added) == sorted(p.name for p in gone)
    [message] = list(second.tasks["message"])
    assert f"{INSTANCES_PER_STUDY - 2} already there" in message, message
