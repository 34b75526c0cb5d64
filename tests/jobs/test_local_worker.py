"""The local worker process (no Redis): it runs jobs outside the caller's process, leaves
them PENDING when stopped, recovers from a SIGKILL at once, and never leaves a job stuck;
``wait()`` restarts it when it is gone and says so when nothing can run a job."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from adit_workbench.access import Access
from adit_workbench.config import Settings
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.query import find_studies
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.jobs import JobManager, JobStatus, NoRunner, defaults
from adit_workbench.jobs.kinds import selective_transfer
from adit_workbench.jobs.local import LocalWorkerBackend, stop_worker, worker_status
from adit_workbench.jobs.queue import InlineBackend, RQBackend
from adit_workbench.jobs.runner import SHUTDOWN_MESSAGE
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.jobs import Job, Task

from .conftest import FakeTransfer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

INSTANCES = 160


@pytest.fixture
def big(
    database: Database, admin: Access, alice: Access, job_settings: Settings, tmp_path: Path
) -> Iterator[str]:
    """One study of 2 x 80 instances on node BIG (long enough to stop in the middle)."""
    with SandboxPacs(tmp_path / "big", ae_title="BIG") as server:
        server.seed(1, seed=7, studies=1, series=2, instances=80, pid_prefix="BIG")
        caps = Capabilities(study_root_find=True, study_root_get=True, patient_root_find=True)
        with database.session() as session:
            node_store.add_server(
                session, ServerSpec("BIG", "BIG", "127.0.0.1", server.port, capabilities=caps)
            )
        admin.admin.grant(alice.profile().groups[0], "BIG", source=True)
        with database.session() as session:
            spec = node_store.get_node(session, "BIG")
        node = open_node(spec, job_settings)
        try:
            [study] = list(find_studies(node))
        finally:
            node.close()
        yield study.study_uid


@pytest.fixture
def local_jobs(database: Database, alice: Access, job_settings: Settings) -> Iterator[JobManager]:
    jobs = JobManager(database, alice, job_settings)
    assert isinstance(jobs.backend, LocalWorkerBackend)
    yield jobs
    stop_worker(job_settings, timeout=10)


def _delivered(root: Path) -> list[Path]:
    return [
        p for p in root.rglob("*.dcm") if not any(part.startswith(".") for part in p.parts[-4:])
    ]


def _until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_stop_leaves_the_task_pending_and_wait_starts_a_new_worker(
    local_jobs: JobManager, big: str, job_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = selective_transfer(local_jobs, [big], source="BIG", destination="OUT", pseudonym="L1")
    first = worker_status(job_settings)
    assert first.running and first.pid != os.getpid()
    _until(lambda: len(_delivered(out)) >= 5, "the local worker delivered nothing")
    assert stop_worker(job_settings)
    [task] = job.tasks.to_dict("records")
    assert task["status"] == "PENDING" and task["attempts"] == 0, task
    assert task["message"] == SHUTDOWN_MESSAGE
    assert job.status is not JobStatus.FAILURE
    assert not worker_status(job_settings).running
    job.wait(120, progress=False)  # notices that no worker runs and starts one
    assert job.status is JobStatus.SUCCESS
    second = worker_status(job_settings)
    assert second.running and second.pid != first.pid
    p = job.progress  # in instances and bytes, not tasks (what the resumed run had left)
    assert p.unit == "instances" and 0 < p.items_done == p.items_total <= INSTANCES
    assert p.bytes_done > 0
    names = [p.name for p in _delivered(out)]
    assert len(names) == len(set(names)) == INSTANCES


def test_a_killed_worker_is_replaced_and_its_task_resumes_at_once(
    local_jobs: JobManager, big: str, job_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = selective_transfer(local_jobs, [big], source="BIG", destination="OUT", pseudonym="L2")
    _until(lambda: len(_delivered(out)) >= 5, "the local worker delivered nothing")
    pid = worker_status(job_settings).pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # the worker and its transfer processes
    _until(lambda: not worker_status(job_settings).running, "the worker did not die")
    # No stale-heartbeat minute: the new worker sees the old one's pid is gone.
    assert job.wait(60, progress=False).status is JobStatus.SUCCESS
    names = [p.name for p in _delivered(out)]
    assert len(names) == len(set(names)) == INSTANCES


def test_a_job_left_canceling_by_a_dead_runner_can_be_canceled_resumed_and_deleted(
    alice: Access, fake_transfer: FakeTransfer, database: Database, job_settings: Settings
) -> None:
    fake_transfer.block.clear()
    backend = InlineBackend(database, job_settings, workers=1)
    try:
        jobs = JobManager(database, alice, job_settings, backend)
        job = selective_transfer(jobs, ["1.2.3", "1.2.4"], source="SANDBOX", destination="OUT")
        _until(fake_transfer.started.is_set, "the task did not start")
        backend.close()
        fake_transfer.block.set()
        _until(lambda: not backend._busy, "the running task did not end")
        # What a crashed kernel left: tasks IN_PROGRESS of a process that is gone.
        with database.session() as session:
            session.execute(
                update(Task)
                .where(Task.job_id == job.id)
                .values(status="IN_PROGRESS", worker=f"{socket.gethostname()}:999999999:1")
            )
            session.execute(update(Job).where(Job.id == job.id).values(status="CANCELING"))
        backend = InlineBackend(database, job_settings, workers=1)
        jobs = JobManager(database, alice, job_settings, backend)
        jobs.cancel(job.id)  # allowed while CANCELING: settles the dead runner's tasks
        assert jobs.get(job.id).status is JobStatus.CANCELED
        assert set(jobs.get(job.id).tasks["status"]) == {"CANCELED"}
        assert jobs.resume(job.id) == 2
        assert jobs.get(job.id).wait(10, progress=False).status is JobStatus.SUCCESS
        fake_transfer.block.clear()
        fake_transfer.started.clear()
        running = selective_transfer(jobs, ["1.2.5"], source="SANDBOX", destination="OUT")
        _until(fake_transfer.started.is_set, "the task did not start")
        jobs.delete(running.id)  # running: canceled first, then deleted
        assert [j.id for j in jobs.list()] == [job.id]
    finally:
        fake_transfer.block.set()
        backend.close()


def test_wait_says_when_no_worker_listens(
    database: Database,
    alice: Access,
    job_settings: Settings,
    redis_url: str,
    fake_transfer: FakeTransfer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(defaults, "NO_RUNNER_GRACE", 0.5)
    backend = RQBackend(redis_url, prefix=f"nobody{os.getpid()}")
    try:
        jobs = JobManager(database, alice, job_settings, backend)
        job = selective_transfer(jobs, ["1.2.3"], source="SANDBOX", destination="OUT")
        with pytest.raises(NoRunner, match="no RQ worker listens"):
            job.wait(30, progress=False)
        assert job.status is JobStatus.PENDING
    finally:
        backend.close()
