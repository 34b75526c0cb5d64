"""Create jobs and act on them, each step checked by the access layer.

:class:`JobManager` is what ``wb.jobs`` is. Creating a job checks (and audits) the app
permission, the node roles, urgency, unpseudonymized transfer, batch size and maintenance
mode, writes the job and all its tasks in one transaction, then queues one entry per task.
Actions follow ADIT's table (owner or staff; verify and restart staff only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from ..access import Access, NodeRole, Permission
from ..errors import InputError, NotFound, PermissionDenied
from ..store.jobs import Job, Task
from ..store.models import utcnow
from ..store.sealed import seal
from . import defaults
from .claim import stale_tasks, write_session
from .queue import InlineBackend, QueueBackend, RQBackend
from .runner import after_task, cancel_local, task_timeout
from .status import (
    FINAL_JOB_STATUSES,
    FINAL_TASK_STATUSES,
    JobKind,
    JobStatus,
    TaskStatus,
    priority,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database
    from .handle import JobHandle

__all__ = ["JobManager", "backend_for"]

_INLINE: dict[str, InlineBackend] = {}
_INLINE_LOCK = threading.Lock()


def backend_for(database: Database, settings: Settings, user: str) -> QueueBackend:
    """RQ when Redis is configured, else the local worker process of the data directory
    (:mod:`.local`; with ``defaults.LOCAL_RUNNER = "inline"``, this process's threads)."""
    if settings.redis_url is not None:
        return RQBackend(settings.redis_url.get_secret_value())
    if defaults.LOCAL_RUNNER == "process":
        from .local import LocalWorkerBackend

        return LocalWorkerBackend(database, settings)
    key = f"{user}@{database.url_for_display}"
    with _INLINE_LOCK:
        backend = _INLINE.get(key)
        if backend is None:
            backend = _INLINE[key] = InlineBackend(database, settings)
            from .sweeper import sweep

            # This user's tasks left PENDING or dead by an earlier process run here now.
            sweep(database, backend, include_pending=True, owner=user)
        return backend


class JobManager:
    """Jobs of one user: create, list, inspect and act (``wb.jobs``)."""

    def __init__(
        self,
        database: Database,
        access: Access,
        settings: Settings,
        backend: QueueBackend | None = None,
    ) -> None:
        self.database = database
        self.access = access
        self.settings = settings
        self._backend = backend

    #: Jobs shown by the notebook and text reprs (newest first).
    REPR_JOBS = 10

    def _table(self) -> tuple[list[dict[str, Any]], bool]:
        handles = self.list(limit=self.REPR_JOBS + 1)
        rows = []
        for handle in handles[: self.REPR_JOBS]:
            summary = handle.summary()
            p = handle.progress
            done, total = p.done_total
            summary["progress"] = f"{done}/{total} {p.unit}"
            rows.append(summary)
        return rows, len(handles) > self.REPR_JOBS

    def __repr__(self) -> str:
        rows, more = self._table()
        head = f"<JobManager user={self.access.user!r}: {len(rows)}{'+' if more else ''} job(s)>"
        if not rows:
            return head
        lines = [head] + [
            f"  {r['id']:>5}  {r['kind']:<18} {r['status']:<11} {r['progress']:<20} "
            f"{r['created']:%Y-%m-%d %H:%M}  {r['message'][:60]}"
            for r in rows
        ]
        if more:
            lines.append("  … wb.jobs.list() or wb.jobs.df() for all")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        rows, more = self._table()
        if not rows:
            return f"<i>No jobs of {escape(self.access.user)} yet.</i>"
        colours = {"SUCCESS": "green", "WARNING": "darkorange", "FAILURE": "red"}
        cols = ("id", "kind", "status", "progress", "source", "destination", "created")
        head = "".join(f"<th>{c}</th>" for c in (*cols, "message"))
        body = []
        for r in rows:
            cells = []
            for c in cols:
                value = r[c]
                text = value.strftime("%Y-%m-%d %H:%M") if c == "created" else str(value or "")
                style = (
                    f" style='color:{colours[text]}'" if c == "status" and text in colours else ""
                )
                cells.append(f"<td{style}>{escape(text)}</td>")
            cells.append(f"<td style='text-align:left'>{escape(r['message'][:120])}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        tail = "<br><i>… wb.jobs.list() or wb.jobs.df() for all</i>" if more else ""
        return f"<table><tr>{head}</tr>{''.join(body)}</table>{tail}"

    @property
    def backend(self) -> QueueBackend:
        """The queue backend (created on first use)."""
        if self._backend is None:
            self._backend = backend_for(self.database, self.settings, self.access.user)
        return self._backend

    # -- reading -----------------------------------------------------------------------
    def get(self, job_id: int) -> JobHandle:
        """The job ``job_id`` (owner or staff only)."""
        from .handle import JobHandle

        self._job_row(job_id)
        return JobHandle(self, job_id)

    __getitem__ = get

    def list(
        self, *, status: str | JobStatus | None = None, all_users: bool = False, limit: int = 100
    ) -> list[JobHandle]:
        """This user's jobs, newest first (staff: everyone's with ``all_users``)."""
        from .handle import JobHandle

        if all_users:
            self.access.require(Permission.STAFF, action="job.list_all")
        query = select(Job.id).order_by(Job.id.desc()).limit(limit)
        if not all_users:
            query = query.where(Job.owner == self.access.user)
        if status is not None:
            query = query.where(Job.status == JobStatus.parse(status).value)
        with self.database.session() as session:
            ids = list(session.scalars(query))
        return [JobHandle(self, job_id) for job_id in ids]

    def df(self, **kwargs: Any) -> Any:
        """:meth:`list` as a DataFrame (id, kind, status, owner, created, progress, message)."""
        import pandas as pd

        return pd.DataFrame([j.summary() for j in self.list(**kwargs)])

    def instances_per_modality(self, job_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """Instances each job's transfer tasks delivered, per modality (the jobs chart).

        Jobs whose tasks recorded none (other kinds, still running, older versions) are
        left out, as are ids that do not exist (deleted meanwhile); another user's job
        needs staff, like :meth:`get`.
        """
        ids = sorted({int(i) for i in job_ids})
        if not ids:
            return {}
        with self.database.session() as session:
            owners = dict(session.execute(select(Job.id, Job.owner).where(Job.id.in_(ids))).all())
            if any(owner != self.access.user for owner in owners.values()):
                self.access.require(Permission.STAFF, action="job.read")
            rows = session.execute(
                select(Task.job_id, Task.modalities)
                .where(Task.job_id.in_(list(owners)), Task.modalities.is_not(None))
                .order_by(Task.id)
            ).all()
        counts: dict[int, dict[str, int]] = {}
        for job_id, modalities in rows:
            into = counts.setdefault(int(job_id), {})
            for modality, n in (modalities or {}).items():
                into[str(modality)] = into.get(str(modality), 0) + int(n)
        return counts

    def _job_row(self, job_id: int, *, staff_only: bool = False, action: str = "job.read") -> Job:
        with self.database.session() as session:
            job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        if staff_only or job.owner != self.access.user:
            self.access.require(Permission.STAFF, action=action, details={"job": job_id})
        return job

    # -- creating ----------------------------------------------------------------------
    def submit(
        self,
        kind: JobKind,
        job: Job,
        tasks: Sequence[Task],
        *,
        verified: bool = True,
    ) -> JobHandle:
        """Store a job and its tasks in one transaction and queue the tasks.

        Callers (the job-kind modules) have checked the kind-specific rules.
        """
        from .handle import JobHandle

        self.access.require_accepting_jobs(action=f"job.create.{kind.value}")
        job.kind = kind.value
        job.owner = self.access.user
        job.status = (JobStatus.PENDING if verified else JobStatus.UNVERIFIED).value
        if job.archive_password:
            job.has_archive_password = True
            job.archive_password = seal(self.settings, job.archive_password)
        for task in tasks:
            task.status = TaskStatus.PENDING.value
        job.tasks = list(tasks)
        details = {"kind": kind.value, "tasks": len(tasks), "source": job.source}
        action = f"job.create.{kind.value}"
        with self.access.audited(action, node=job.source, details=details) as details:
            with self.database.session() as session:
                session.add(job)
                session.flush()
                job_id = job.id
                if not tasks:
                    job.status, job.message = JobStatus.SUCCESS.value, "No tasks to process."
                    job.ended = utcnow()
            details["job"] = job_id
        if verified:
            self._enqueue(job_id)
        return JobHandle(self, job_id)

    def check_common(
        self,
        kind: JobKind,
        *,
        source: str | None,
        destination: str | None = None,
        urgent: bool = False,
        pseudonymize: bool = True,
    ) -> None:
        """The checks every job kind makes before it reads its input."""
        action = f"job.create.{kind.value}"
        self.access.require_accepting_jobs(action=action)
        self.access.require(Permission(kind.value), action=action)
        if source is not None:
            self.access.require_node(source, NodeRole.SOURCE, action=action)
        if destination is not None:
            self.access.require_node(destination, NodeRole.DESTINATION, action=action)
        if urgent:
            self.access.require(Permission.URGENT, action=action)
        if kind.is_transfer and not pseudonymize:
            self.access.require(Permission.TRANSFER_UNPSEUDONYMIZED, action=action)

    def row_limit(self, kind: JobKind) -> int:
        """Rows a batch file of ``kind`` may have for this user."""
        if self.access.has(Permission.UNLIMITED_BATCH_SIZE):
            return defaults.HARD_MAX_ROWS
        if kind is JobKind.BATCH_QUERY:
            return defaults.MAX_BATCH_QUERY_ROWS
        return defaults.MAX_BATCH_TRANSFER_ROWS

    # -- queueing ----------------------------------------------------------------------
    def _enqueue(self, job_id: int, task_ids: Iterable[int] | None = None) -> int:
        now = utcnow()
        with write_session(self.database) as session:
            job = session.get(Job, job_id)
            if job is None:
                return 0
            query = select(Task.id).where(
                Task.job_id == job_id, Task.status == TaskStatus.PENDING.value
            )
            if task_ids is not None:
                query = query.where(Task.id.in_(list(task_ids)))
            ids = list(session.scalars(query.order_by(Task.id)))
            session.execute(
                update(Task)
                .where(Task.id.in_(ids))
                .values(queued=now)
                .execution_options(synchronize_session=False)
            )
            kind, urgent = JobKind(job.kind), job.urgent
        level, timeout = priority(kind, urgent), task_timeout(kind)
        many = getattr(self.backend, "enqueue_many", None)
        if many is not None and len(ids) > 1:
            many(ids, priority=level, timeout=timeout)
        else:
            for task_id in ids:
                self.backend.enqueue(task_id, priority=level, timeout=timeout)
        return len(ids)

    # -- actions -----------------------------------------------------------------------
    def verify(self, job_id: int) -> None:
        """Staff: release an UNVERIFIED job to the queue."""
        self._job_row(job_id, staff_only=True, action="job.verify")
        self._set_status(job_id, JobStatus.UNVERIFIED, JobStatus.PENDING, "job.verify")
        self._enqueue(job_id)

    def cancel(self, job_id: int) -> None:
        """Pending tasks are canceled; running ones stop at their next instance.

        Works on a job that is waiting, running or already canceling (tasks of a worker
        that died are then canceled at once, so that no job stays CANCELING).
        """
        job = self._job_row(job_id, action="job.cancel")
        if job.status in {s.value for s in FINAL_JOB_STATUSES}:
            raise InputError(f"job {job_id} has already ended ({job.status}); nothing to cancel")
        audit = self.access.audited("job.cancel", details={"job": job_id})
        with audit, self.database.session() as session:
            session.execute(
                update(Task)
                .where(Task.job_id == job_id, Task.status == TaskStatus.PENDING.value)
                .values(
                    status=TaskStatus.CANCELED.value,
                    message="Task manually canceled.",
                    ended=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            running = list(
                session.scalars(
                    select(Task.id).where(
                        Task.job_id == job_id, Task.status == TaskStatus.IN_PROGRESS.value
                    )
                )
            )
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=JobStatus.CANCELING.value)
                .execution_options(synchronize_session=False)
            )
        cancel_local(running)
        self._settle(job_id)

    def _settle(self, job_id: int) -> JobStatus | None:
        """Cancel the running tasks of a CANCELING job whose worker is gone; derive."""
        everyone = not self.runner_alive()
        with write_session(self.database) as session:
            job = session.get(Job, job_id)
            if job is not None and job.status == JobStatus.CANCELING.value:
                dead = {t.id for t in stale_tasks(session, defaults.STALE_AFTER, dead_local=True)}
                query = update(Task).where(
                    Task.job_id == job_id, Task.status == TaskStatus.IN_PROGRESS.value
                )
                if not everyone:
                    query = query.where(Task.id.in_(dead))
                session.execute(
                    query.values(
                        status=TaskStatus.CANCELED.value,
                        message="Task was canceled (its worker had stopped).",
                        ended=utcnow(),
                        worker=None,
                    ).execution_options(synchronize_session=False)
                )
        return after_task(self.database, job_id)

    def _wait_stopped(self, job_id: int, timeout: float = 15.0) -> JobStatus:
        """Give the running tasks of a CANCELING job time to stop (a heartbeat or two)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self._settle(job_id) or JobStatus.CANCELED
            if status is not JobStatus.CANCELING or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    # -- runners -----------------------------------------------------------------------
    def runner_alive(self) -> bool:
        """Whether something runs this user's queued tasks (a worker that beats)."""
        alive = getattr(self.backend, "alive", None)
        return True if alive is None else bool(alive())

    def wake_runner(self) -> str | None:
        """Start the runner if it can be started from here (the local worker); returns
        why none runs when it cannot."""
        ensure = getattr(self.backend, "ensure", None)
        if ensure is not None:
            ensure()
            if self.runner_alive():
                return None
        describe = getattr(self.backend, "describe_dead", None)
        return describe() if describe is not None else "no worker is running"

    def resume(self, job_id: int, *, archive_password: str | None = None) -> int:
        """Canceled tasks run again; returns how many.

        Works on a CANCELED job, on one still CANCELING (its running tasks are given a
        few seconds to stop) and on a finished job with canceled tasks. An archive job
        needs its ``archive_password`` again: it was erased when the job ended (the same
        holds for :meth:`retry`, :meth:`restart` and :meth:`reset_task`).
        """
        job = self._job_row(job_id, action="job.resume")
        if job.status == JobStatus.CANCELING.value:
            if self._wait_stopped(job_id) is JobStatus.CANCELING:
                raise InputError(f"job {job_id} is still stopping its tasks; try again shortly")
        elif job.status not in {s.value for s in FINAL_JOB_STATUSES}:
            raise InputError(f"job {job_id} is {job.status}: it has not been canceled")
        return self._reset(
            job_id, None, [TaskStatus.CANCELED], "job.resume", password=archive_password
        )

    def retry(self, job_id: int, *, archive_password: str | None = None) -> int:
        """Failed tasks of a FAILURE job run again; returns how many."""
        return self._reset(
            job_id, JobStatus.FAILURE, [TaskStatus.FAILURE], "job.retry", password=archive_password
        )

    def restart(self, job_id: int, *, archive_password: str | None = None) -> int:
        """Staff: every task of a finished job runs again."""
        self._job_row(job_id, staff_only=True, action="job.restart")
        return self._reset(
            job_id, None, list(FINAL_TASK_STATUSES), "job.restart", password=archive_password
        )

    def reset_task(self, task_id: int, *, archive_password: str | None = None) -> None:
        """Run one finished task again."""
        with self.database.session() as session:
            task = session.get(Task, task_id)
            if task is None:
                raise NotFound(f"no task {task_id}")
            job_id, status = task.job_id, task.status
        self._job_row(job_id, action="task.reset")
        if status not in FINAL_TASK_STATUSES:
            raise InputError(f"task {task_id} is {status}; only a finished task can be reset")
        self._reset(
            job_id, None, list(FINAL_TASK_STATUSES), "task.reset", task_ids=[task_id],
            password=archive_password,
        )  # fmt: skip

    def delete(self, job_id: int) -> None:
        """Delete a job in any state; a waiting or running one is canceled first."""
        job = self._job_row(job_id, action="job.delete")
        if job.status in (JobStatus.PENDING, JobStatus.IN_PROGRESS, JobStatus.UNVERIFIED):
            self.cancel(job_id)
        if job.status in (JobStatus.IN_PROGRESS, JobStatus.CANCELING):
            self._wait_stopped(job_id, timeout=5.0)
        audit = self.access.audited("job.delete", details={"job": job_id})
        with audit, self.database.session() as session:
            session.execute(delete(Job).where(Job.id == job_id))

    def requeue(self, job_id: int) -> int:
        """Queue the job's waiting tasks again (after Redis lost its queue); duplicates of
        entries that still exist are harmless. Returns how many were queued."""
        job = self._job_row(job_id, action="job.requeue")
        if job.status not in (JobStatus.PENDING, JobStatus.IN_PROGRESS):
            raise InputError(f"job {job_id} is {job.status}; nothing waits in a queue")
        with self.access.audited("job.requeue", details={"job": job_id}):
            return self._enqueue(job_id)

    def make_urgent(self, job_id: int) -> None:
        """Move a job's waiting tasks to the urgent priority (needs ``urgent``)."""
        job = self._job_row(job_id, action="job.urgent")
        self.access.require(Permission.URGENT, action="job.urgent", details={"job": job_id})
        if job.kind == JobKind.MASS_TRANSFER and not self.access.has(Permission.STAFF):
            raise PermissionDenied(
                "mass transfers are made urgent by staff only", permission="staff"
            )
        audit = self.access.audited("job.urgent", details={"job": job_id})
        with audit, self.database.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(urgent=True)
                .execution_options(synchronize_session=False)
            )
        # The old entries become no-ops: whichever runs first claims the task.
        if job.status != JobStatus.UNVERIFIED:
            self._enqueue(job_id)

    def _set_status(self, job_id: int, before: JobStatus, after: JobStatus, action: str) -> None:
        audit = self.access.audited(action, details={"job": job_id})
        with audit, self.database.session() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == before.value)
                .values(status=after.value)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise InputError(f"job {job_id} is not {before.value}")

    def _reset(
        self,
        job_id: int,
        job_status: JobStatus | None,
        task_statuses: Sequence[TaskStatus],
        action: str,
        *,
        task_ids: Sequence[int] | None = None,
        password: str | None = None,
    ) -> int:
        job = self._job_row(job_id, action=action)
        if job.has_archive_password and not job.archive_password and not password:
            raise InputError(
                f"job {job_id} writes a password-protected archive and its password was "
                "erased when the job ended: give archive_password again"
            )
        if job_status is not None and job.status != job_status.value:
            raise InputError(
                f"job {job_id} is {job.status}; {action.split('.')[-1]} needs {job_status.value}"
            )
        if task_ids is None and job.status not in {s.value for s in FINAL_JOB_STATUSES}:
            raise InputError(f"job {job_id} is {job.status}; wait for it to finish")
        with self.access.audited(action, details={"job": job_id}) as details:
            with self.database.session() as session:
                query = update(Task).where(
                    Task.job_id == job_id, Task.status.in_([s.value for s in task_statuses])
                )
                if task_ids is not None:
                    query = query.where(Task.id.in_(list(task_ids)))
                count = session.execute(
                    query.values(
                        status=TaskStatus.PENDING.value,
                        attempts=0,
                        message="",
                        log="",
                        worker=None,
                        heartbeat=None,
                        started=None,
                        ended=None,
                        done=0,
                    ).execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        status=JobStatus.PENDING.value,
                        ended=None,
                        mail_sent=False,
                        **({"archive_password": seal(self.settings, password)} if password else {}),
                    )
                    .execution_options(synchronize_session=False)
                )
            details["tasks"] = count
        after_task(self.database, job_id)
        self._enqueue(job_id)
        return int(count)
