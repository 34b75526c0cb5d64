"""Failures that say why, before anything is queued: a folder that does not exist, a
study the source does not hold, a node that cannot do its part; a configuration error
found while running is final, not retried."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adit_workbench.access import Access
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.errors import InputError, NodeUnreachable
from adit_workbench.jobs import JobFailed, JobManager, JobStatus
from adit_workbench.jobs.kinds import batch_query, batch_transfer, selective_transfer
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.jobs import Job

from .conftest import FakeTransfer, Harness

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _jobs(database: Database) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.fixture
def jobs(harness: Harness, alice: Access, admin: Access, database: Database, tmp_path: Path):
    """Alice may use GONE (a folder whose path does not exist) and MUTE (probed: find only)."""
    with database.session() as session:
        node_store.add_folder(session, FolderSpec("GONE", tmp_path / "no" / "such"))
        node_store.add_server(
            session,
            ServerSpec(  # probed: it answers C-FIND only
                "MUTE",
                "MUTE",
                "127.0.0.1",
                1,
                capabilities=Capabilities(probed_at=datetime.now(UTC)),
            ),
        )
    group = alice.profile().groups[0]
    admin.admin.grant(group, "GONE", source=True, destination=True)
    admin.admin.grant(group, "MUTE", source=True, destination=True)
    return harness.manager(alice)


def _study_uids(harness: Harness, alice: Access) -> list[str]:
    from adit_workbench.workbench import Workbench

    wb = Workbench(harness.settings, harness.database, alice)
    return [s.study_uid for s in wb.node("SANDBOX").find_studies(patient_id="SYN0001")]


def test_a_missing_folder_is_refused_before_queueing(
    jobs: JobManager, database: Database, tmp_path: Path
) -> None:
    gone = tmp_path / "no" / "such"
    with pytest.raises(InputError, match=f"destination GONE: folder {gone} does not exist"):
        selective_transfer(jobs, ["1.2.3"], source="SANDBOX", destination="GONE")
    queries = tmp_path / "q.csv"
    queries.write_text("PatientID\nSYN0001\n")
    with pytest.raises(InputError, match=r"source GONE: folder .* does not exist"):
        batch_query(jobs, queries, source="GONE")
    assert _jobs(database) == 0


def test_a_node_without_the_capability_is_refused(jobs: JobManager, database: Database) -> None:
    with pytest.raises(InputError, match=r"destination MUTE cannot receive studies.*store, stow"):
        selective_transfer(jobs, ["1.2.3"], source="SANDBOX", destination="MUTE")
    with pytest.raises(InputError, match=r"source MUTE cannot send studies \(C-GET"):
        selective_transfer(jobs, ["1.2.3"], source="MUTE", destination="OUT")
    assert _jobs(database) == 0


def test_unknown_study_uids_are_refused_with_their_lines(
    jobs: JobManager,
    harness: Harness,
    alice: Access,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if harness.kind != "inline":
        pytest.skip("submit-time checks do not depend on the queue")
    known = _study_uids(harness, alice)
    with pytest.raises(InputError, match=r"source SANDBOX has no study 1\.2\.999$"):
        selective_transfer(jobs, [known[0], "1.2.999"], source="SANDBOX", destination="OUT")
    rows = tmp_path / "t.csv"
    rows.write_text(
        f"PatientID,StudyInstanceUID,Pseudonym\nSYN0001,{known[0]},P1\nSYN0001,1.2.998,P1\n"
    )
    with pytest.raises(InputError, match=r"has no study 1\.2\.998 \(line 3\)"):
        batch_transfer(jobs, rows, source="SANDBOX", destination="OUT")
    assert _jobs(database) == 0


def test_a_folder_that_vanishes_fails_the_task_at_once_with_the_reason(
    jobs: JobManager, harness: Harness, fake_transfer: FakeTransfer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    fake_transfer.fail["1.2.3"] = NodeUnreachable("OUT", "STORE", "folder does not exist")
    fake_transfer.block.clear()
    job = selective_transfer(jobs, ["1.2.3"], source="SANDBOX", destination="OUT")
    out.rmdir()
    fake_transfer.block.set()
    harness.drain()
    with pytest.raises(JobFailed, match=rf"task 1 \(study 1\.2\.3\): .*folder {out} does not"):
        job.wait(10, progress=False)
    [task] = job.tasks.to_dict("records")
    assert task["status"] == "FAILURE" and task["attempts"] == 1  # not retried
    assert job.status is JobStatus.FAILURE
