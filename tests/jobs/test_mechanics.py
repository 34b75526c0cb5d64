"""Queue mechanics on both backends and both databases: claiming, the status machine,
actions, priorities, cancel and the sweeper.

QUEUE-MECHANICS TESTS: the transfer adapter's target is the FakeTransfer stand-in (see
conftest); the real transfer is exercised in test_transfer_jobs.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from adit_workbench.access import Access, Permission
from adit_workbench.errors import (
    InputError,
    MaintenanceMode,
    NodeAccessDenied,
    NodeUnreachable,
    PermissionDenied,
    TransferError,
)
from adit_workbench.jobs import JobFailed, JobManager, JobStatus, TaskStatus, defaults
from adit_workbench.jobs.claim import claim_task, heartbeat
from adit_workbench.jobs.kinds import selective_transfer
from adit_workbench.jobs.runner import run_task
from adit_workbench.jobs.sweeper import sweep
from adit_workbench.store.jobs import Task
from adit_workbench.store.models import utcnow

from .conftest import FakeTransfer, Harness

UIDS = [f"1.2.826.0.1.3680043.10.{n}" for n in range(1, 6)]


def _statuses(harness: Harness, job_id: int) -> list[str]:
    with harness.database.session() as session:
        return list(
            session.scalars(select(Task.status).where(Task.job_id == job_id).order_by(Task.id))
        )


def test_each_task_runs_once_and_the_job_succeeds(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer
) -> None:
    jobs = harness.manager(alice)
    job = selective_transfer(
        jobs, UIDS[:3], source="SANDBOX", destination="OUT", pseudonym="SUBJ-01"
    )
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    assert sorted(c[0] for c in fake_transfer.calls) == UIDS[:3]
    assert {c[2] for c in fake_transfer.calls} == {"SUBJ-01"}
    assert job.message.startswith("All tasks succeeded.")
    p = job.progress
    assert (p.total, p.finished, p.fraction) == (3, 3, 1.0)
    assert job.tasks["attempts"].tolist() == [1, 1, 1]


def test_failures_show_and_retry_runs_only_the_failed(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer
) -> None:
    fake_transfer.fail[UIDS[1]] = TransferError("destination refused 2 instances")
    jobs = harness.manager(alice)
    job = selective_transfer(jobs, UIDS[:3], source="SANDBOX", destination="OUT", pseudonym="P")
    harness.drain()
    with pytest.raises(JobFailed, match=r"task 2 \(study .*\): destination refused") as info:
        job.wait(10, progress=False)
    assert info.value.job_id == job.id and len(info.value.reasons) == 1
    assert job.message.startswith("Some tasks failed")
    assert _statuses(harness, job.id) == ["SUCCESS", "FAILURE", "SUCCESS"]
    assert "destination refused" in job.tasks["message"][1]
    del fake_transfer.fail[UIDS[1]]
    assert job.retry() == 1
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    assert [c[0] for c in fake_transfer.calls].count(UIDS[1]) == 1
    assert [c[0] for c in fake_transfer.calls].count(UIDS[0]) == 1


def test_retriable_error_is_retried_then_fails(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_transfer.fail[UIDS[0]] = NodeUnreachable("SANDBOX", "C-GET", "connection refused")
    monkeypatch.setattr(defaults, "MAX_ATTEMPTS", 2)
    monkeypatch.setattr("adit_workbench.jobs.runner._retry_delay", lambda attempt: 0.0)
    jobs = harness.manager(alice)
    job = selective_transfer(jobs, UIDS[:1], source="SANDBOX", destination="OUT", pseudonym="P")
    harness.drain()
    harness.drain()
    job.wait(10, progress=False, raise_on_failure=False)
    [row] = job.tasks.to_dict("records")
    assert row["status"] == "FAILURE" and row["attempts"] == 2
    assert "connection refused" in row["message"]


def test_cancel_stops_a_running_task_and_resume_runs_it_again(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "HEARTBEAT_INTERVAL", 0.05)
    fake_transfer.block.clear()
    jobs = harness.manager(alice)
    job = selective_transfer(jobs, UIDS[:2], source="SANDBOX", destination="OUT", pseudonym="P")

    def cancel_when_running() -> None:
        assert fake_transfer.started.wait(20)
        job.cancel()

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    harness.drain()
    canceller.join()
    assert job.wait(10, progress=False, raise_on_failure=False).status is JobStatus.CANCELED
    assert sorted(_statuses(harness, job.id)) == ["CANCELED", "CANCELED"]
    assert fake_transfer.calls == []
    fake_transfer.block.set()
    assert job.resume() == 2
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    assert sorted(c[0] for c in fake_transfer.calls) == UIDS[:2]


def test_urgent_tasks_run_before_waiting_ones(
    harness: Harness, make_user: Callable[..., Access], fake_transfer: FakeTransfer
) -> None:
    carol = make_user("carol", Permission.SELECTIVE_TRANSFER, Permission.URGENT)
    jobs = harness.manager(carol)
    fake_transfer.block.clear()
    slow = selective_transfer(jobs, UIDS[:3], source="SANDBOX", destination="OUT", pseudonym="A")
    urgent = selective_transfer(
        jobs, UIDS[3:5], source="SANDBOX", destination="OUT", pseudonym="B", urgent=True
    )
    releaser = threading.Timer(0.3, fake_transfer.block.set)
    releaser.start()
    harness.drain()
    releaser.join()
    order = [c[2] for c in fake_transfer.calls]
    # Inline: the first slow task may already run; everything after it is urgent first.
    tail = order[1:] if harness.kind == "inline" else order
    assert tail[:2] == ["B", "B"], order
    assert slow.wait(10, progress=False).status is urgent.wait(10, progress=False).status


def test_make_urgent_after_creation(
    harness: Harness, make_user: Callable[..., Access], alice: Access, fake_transfer: FakeTransfer
) -> None:
    jobs = harness.manager(alice)
    fake_transfer.block.clear()
    job = selective_transfer(jobs, UIDS[:2], source="SANDBOX", destination="OUT", pseudonym="P")
    if harness.kind == "inline":
        fake_transfer.started.wait(10)  # SQLite: let the pool's claim commit first
    with pytest.raises(PermissionDenied):
        job.make_urgent()
    dave = make_user("dave", Permission.SELECTIVE_TRANSFER, Permission.URGENT, Permission.STAFF)
    harness.manager(dave).make_urgent(job.id)
    fake_transfer.block.set()
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    assert len(fake_transfer.calls) == 2  # the old queue entries found nothing to do


def test_actions_follow_adits_rules(
    harness: Harness,
    alice: Access,
    make_user: Callable[..., Access],
    fake_transfer: FakeTransfer,
) -> None:
    jobs = harness.manager(alice)
    job = selective_transfer(jobs, UIDS[:2], source="SANDBOX", destination="OUT", pseudonym="P")
    harness.drain()
    job.wait(10, progress=False)
    with pytest.raises(InputError, match="needs FAILURE"):
        job.retry()
    with pytest.raises(PermissionDenied):
        job.restart()  # staff only
    staff = harness.manager(make_user("sam", Permission.STAFF))
    assert staff.restart(job.id) == 2
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    task_id = int(job.tasks["task"][0])
    jobs.reset_task(task_id)
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    assert len(fake_transfer.calls) == 2 + 2 + 1
    bob = harness.manager(make_user("bob", Permission.SELECTIVE_TRANSFER))
    with pytest.raises(PermissionDenied):
        bob.get(job.id)  # not his job
    assert [j.id for j in bob.list()] == []
    assert [j.id for j in jobs.list()] == [job.id]
    job.delete()
    assert jobs.list() == []


def test_entry_checks(
    harness: Harness, alice: Access, admin: Access, fake_transfer: FakeTransfer
) -> None:
    jobs = harness.manager(alice)
    with pytest.raises(NodeAccessDenied):
        selective_transfer(jobs, UIDS[:1], source="SANDBOX", destination="OTHER", pseudonym="P")
    with pytest.raises(PermissionDenied, match="urgent"):
        selective_transfer(jobs, UIDS[:1], source="SANDBOX", destination="OUT", urgent=True)
    with pytest.raises(PermissionDenied, match="transfer_unpseudonymized"):
        selective_transfer(jobs, UIDS[:1], source="SANDBOX", destination="OUT", pseudonymize=False)
    many = [f"1.2.3.{n}" for n in range(11)]
    with pytest.raises(PermissionDenied, match="staff"):
        selective_transfer(jobs, many, source="SANDBOX", destination="OUT", pseudonym="P")
    admin.admin.set_maintenance(True, message="upgrade")
    with pytest.raises(MaintenanceMode):
        selective_transfer(jobs, UIDS[:1], source="SANDBOX", destination="OUT", pseudonym="P")
    assert jobs.list() == []


def test_rights_are_checked_again_when_a_task_starts(
    harness: Harness, alice: Access, admin: Access, fake_transfer: FakeTransfer
) -> None:
    fake_transfer.block.clear()
    jobs = harness.manager(alice)
    job = selective_transfer(jobs, UIDS[:2], source="SANDBOX", destination="OUT", pseudonym="P")
    group = alice.profile().groups[0]
    if harness.kind == "inline":
        # SQLite: let the pool's claim commit first (a read-then-write transaction that
        # sees another commit in between fails with "database is locked").
        fake_transfer.started.wait(10)
    admin.admin.revoke(group, "OUT")
    fake_transfer.block.set()
    harness.drain()
    job.wait(10, progress=False, raise_on_failure=False)
    messages = job.tasks["message"].tolist()
    # Inline may have started the first task before the revocation.
    assert any("may not use node 'OUT'" in m for m in messages), messages


def test_claim_is_exclusive_across_threads(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer
) -> None:
    jobs = JobManager(harness.database, alice, harness.settings, NullBackend())
    job = selective_transfer(jobs, UIDS[:1], source="SANDBOX", destination="OUT", pseudonym="P")
    task_id = int(job.tasks["task"][0])
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda n: claim_task(harness.database, task_id, f"w{n}"), range(8)))
    assert sum(w is not None for w in wins) == 1
    winner = next(w for w in wins if w is not None)
    assert heartbeat(harness.database, task_id, "intruder") == (False, True)
    assert heartbeat(harness.database, task_id, winner.task["worker"])[0] is True


def test_sweeper_requeues_a_dead_workers_task(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer
) -> None:
    null = NullBackend()
    jobs = JobManager(harness.database, alice, harness.settings, null)
    job = selective_transfer(jobs, UIDS[:1], source="SANDBOX", destination="OUT", pseudonym="P")
    task_id = int(job.tasks["task"][0])
    assert null.queued == [task_id]
    # A worker claims the task and dies: its heartbeat goes stale.
    assert claim_task(harness.database, task_id, "ghost:1:1") is not None
    with harness.database.session() as session:
        session.execute(update(Task).values(heartbeat=utcnow() - timedelta(minutes=5)))
    assert sweep(harness.database, harness.backend, stale_after=60) == [task_id]
    assert sweep(harness.database, harness.backend, stale_after=60) == []  # one winner
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    assert len(fake_transfer.calls) == 1
    [row] = job.tasks.to_dict("records")
    assert row["attempts"] == 2


class NullBackend:
    """Records what would be queued; runs nothing."""

    name = "null"

    def __init__(self) -> None:
        self.queued: list[int] = []

    def enqueue(self, task_id: int, *, priority: int, timeout: int, delay: float = 0) -> None:
        self.queued.append(task_id)

    def close(self) -> None:
        pass


def test_a_stale_queue_entry_is_a_no_op(harness: Harness, alice: Access) -> None:
    """run_task on a finished or unknown task does nothing."""
    assert run_task(harness.database, harness.settings, 999_999) is None


def test_task_status_enum_values() -> None:
    assert {s.value for s in TaskStatus} == {
        "PENDING",
        "IN_PROGRESS",
        "CANCELED",
        "SUCCESS",
        "WARNING",
        "FAILURE",
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_inline_start_up_sweep_takes_only_the_users_own_tasks(
    harness: Harness,
    alice: Access,
    make_user: Callable[..., Access],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(defaults, "CHECK_STUDIES_AT_SUBMIT", False)  # made-up UIDs
    bob = make_user("bob", Permission.SELECTIVE_TRANSFER)
    for who in (alice, bob):
        jobs = JobManager(harness.database, who, harness.settings, NullBackend())
        selective_transfer(jobs, UIDS[:2], source="SANDBOX", destination="OUT", pseudonym="P")
    null = NullBackend()
    queued = sweep(harness.database, null, include_pending=True, owner="alice")
    with harness.database.session() as session:
        owners = {
            session.get(Task, task_id).job.owner  # type: ignore[union-attr]
            for task_id in queued
        }
    assert len(queued) == 2 and owners == {"alice"}
