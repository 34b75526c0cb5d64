"""The task state machine in the database: claim, heartbeat, finish, derive the job status.

Every change is a conditional write, so that the database, not the queue, decides who
runs a task: a task is claimed only while PENDING (PostgreSQL: ``SELECT … FOR UPDATE SKIP
LOCKED``; SQLite: an atomic ``UPDATE … WHERE status = 'PENDING'`` in a write transaction),
and a worker writes its heartbeat and its outcome only while it still owns the task. A
second queue entry for the same task (a retry, a sweep, a make-urgent) therefore finds
nothing to do, and a worker the sweeper gave up on cannot overwrite its successor.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..store import Database
from ..store.jobs import Job, Task
from ..store.models import utcnow
from .status import FINAL_JOB_STATUSES, JobStatus, TaskStatus, derive_job_status

__all__ = [
    "ClaimedTask",
    "claim_task",
    "finish_task",
    "heartbeat",
    "refresh_job_status",
    "worker_id",
    "write_session",
]

_RUNNABLE_JOB = (JobStatus.PENDING.value, JobStatus.IN_PROGRESS.value)


def worker_id() -> str:
    """Who runs a task: host, process and thread (unique among live workers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@contextmanager
def write_session(database: Database) -> Iterator[Session]:
    """A session whose transaction takes the write lock first.

    On SQLite a deferred transaction that reads and then writes fails when another
    writer committed in between; BEGIN IMMEDIATE queues the writers instead.
    """
    with database.session() as session:
        if database.is_sqlite:
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session


@dataclass(frozen=True)
class ClaimedTask:
    """What a worker needs of a task it now owns (a detached snapshot)."""

    id: int
    job_id: int
    kind: str
    owner: str
    attempts: int
    # Out of the repr: the job's values include the archive password while it runs.
    task: dict[str, Any] = field(repr=False)
    job: dict[str, Any] = field(repr=False)


def _snapshot(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


def claim_task(database: Database, task_id: int, worker: str) -> ClaimedTask | None:
    """Take task ``task_id`` for ``worker`` if it is PENDING and its job may run.

    Returns None when another worker has it, it is finished or canceled, or its job is
    not runnable (unverified, canceling): the caller simply drops its queue entry.
    """
    now = utcnow()
    with write_session(database) as session:
        if database.is_sqlite:
            result = session.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == TaskStatus.PENDING.value)
                .where(Task.job_id.in_(select(Job.id).where(Job.status.in_(_RUNNABLE_JOB))))
                .values(
                    status=TaskStatus.IN_PROGRESS.value,
                    attempts=Task.attempts + 1,
                    worker=worker,
                    heartbeat=now,
                    started=now,
                    ended=None,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            task = session.get(Task, task_id, populate_existing=True)
        else:
            task = session.scalars(
                select(Task)
                .where(Task.id == task_id, Task.status == TaskStatus.PENDING.value)
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if task is None:
                return None
            if session.get(Job, task.job_id).status not in _RUNNABLE_JOB:  # type: ignore[union-attr]
                return None
            task.status = TaskStatus.IN_PROGRESS.value
            task.attempts += 1
            task.worker = worker
            task.heartbeat = task.started = now
            task.ended = None
        assert task is not None
        job = session.get(Job, task.job_id)
        assert job is not None
        if job.status == JobStatus.PENDING.value:
            job.status = JobStatus.IN_PROGRESS.value
        if job.started is None:
            job.started = now
        session.flush()
        return ClaimedTask(
            task.id, job.id, job.kind, job.owner, task.attempts, _snapshot(task), _snapshot(job)
        )


def _progress_values(
    done: int | None, total: int | None, bytes_done: int | None, bytes_total: int | None
) -> dict[str, Any]:
    values = {"done": done, "total": total, "bytes_done": bytes_done, "bytes_total": bytes_total}
    return {k: v for k, v in values.items() if v is not None}


def heartbeat(
    database: Database,
    task_id: int,
    worker: str,
    *,
    done: int | None = None,
    total: int | None = None,
    bytes_done: int | None = None,
    bytes_total: int | None = None,
) -> tuple[bool, bool]:
    """Prove ``worker`` still runs the task; returns ``(still_owner, cancel_requested)``."""
    values: dict[str, Any] = {"heartbeat": utcnow()}
    values.update(_progress_values(done, total, bytes_done, bytes_total))
    with database.session() as session:
        result = session.execute(
            update(Task)
            .where(
                Task.id == task_id,
                Task.worker == worker,
                Task.status == TaskStatus.IN_PROGRESS.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        owner = result.rowcount == 1  # type: ignore[attr-defined]
        status = session.scalar(
            select(Job.status).join(Task, Task.job_id == Job.id).where(Task.id == task_id)
        )
    cancel = status in (JobStatus.CANCELING.value, JobStatus.CANCELED.value, None)
    return owner, cancel or not owner


def finish_task(
    database: Database,
    task_id: int,
    worker: str,
    status: TaskStatus,
    message: str,
    log: str = "",
    *,
    done: int | None = None,
    total: int | None = None,
    bytes_done: int | None = None,
    bytes_total: int | None = None,
    modalities: dict[str, int] | None = None,
    uncount: bool = False,
) -> bool:
    """Record the outcome (and the last progress) if ``worker`` still owns the task;
    False if it lost it.

    A task put back to PENDING (a retriable failure) keeps its attempt count, unless
    ``uncount`` (its worker stopped: the attempt was not the task's fault).
    ``modalities`` (instances delivered per modality) replaces an earlier attempt's.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "message": message[:4000]}
    values.update(_progress_values(done, total, bytes_done, bytes_total))
    if modalities is not None:
        values["modalities"] = modalities
    if status is TaskStatus.PENDING:
        values.update(worker=None, heartbeat=None, started=None)
        if uncount:
            values["attempts"] = Task.attempts - 1
    else:
        values.update(ended=now, heartbeat=now)
    with write_session(database) as session:
        task = session.get(Task, task_id)
        if task is None or task.worker != worker or task.status != TaskStatus.IN_PROGRESS.value:
            return False
        if log:
            values["log"] = (task.log + log)[-50_000:]
        result = session.execute(
            update(Task)
            .where(Task.id == task_id, Task.worker == worker)
            .where(Task.status == TaskStatus.IN_PROGRESS.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def refresh_job_status(database: Database, job_id: int) -> tuple[JobStatus, bool] | None:
    """Derive and store the job's status from its tasks.

    Returns the status and whether the job has just become final (so that exactly one
    caller sends the finished mail and clears the archive password), or None for a job
    that no longer exists. The job row is locked so that two workers finishing the last
    two tasks at once cannot store a stale status.
    """
    with write_session(database) as session:
        query = select(Job).where(Job.id == job_id)
        if not database.is_sqlite:
            query = query.with_for_update()
        job = session.scalars(query).one_or_none()
        if job is None:
            return None
        statuses = session.scalars(select(Task.status).where(Task.job_id == job_id)).all()
        before = JobStatus(job.status)
        status, message = derive_job_status(before, statuses)
        job.status = status.value
        job.message = message
        became_final = status in FINAL_JOB_STATUSES and before not in FINAL_JOB_STATUSES
        if became_final:
            job.ended = utcnow()
            job.archive_password = None  # only needed while tasks write archives
        elif status not in FINAL_JOB_STATUSES:
            job.ended = None
        return status, became_final


def _dead_here(worker: str | None) -> bool:
    """Whether ``worker`` (host:pid:thread) is a process of this host that has ended."""
    if not worker:
        return False
    parts = worker.split(":")
    if len(parts) < 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie has ended too
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def stale_tasks(session: Session, older_than: float, *, dead_local: bool = False) -> list[Task]:
    """Running tasks whose heartbeat is older than ``older_than`` seconds (and, with
    ``dead_local``, those held by a process of this host that has ended)."""
    limit = utcnow() - timedelta(seconds=older_than)
    stale = (Task.heartbeat < limit) | Task.heartbeat.is_(None)
    query = select(Task).where(Task.status == TaskStatus.IN_PROGRESS.value)
    if not dead_local:
        return list(session.scalars(query.where(stale)))
    rows = session.scalars(query).all()
    return [t for t in rows if t.heartbeat is None or t.heartbeat < limit or _dead_here(t.worker)]
