"""Recovery: put tasks whose worker died back in the queue.

A worker proves it lives by its heartbeat (:func:`.claim.heartbeat`). A running task
whose heartbeat is older than :data:`~.defaults.STALE_AFTER` seconds belongs to a worker
that was killed, ran out of memory or lost its machine: the sweep sets it PENDING again
(or FAILURE after :data:`~.defaults.MAX_ATTEMPTS` attempts) and queues it. Any number of
sweepers may run at once: each reset is a conditional write on the stale heartbeat, so
one sweeper wins and the others find nothing; a duplicate queue entry is a no-op.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select, update

from ..store import Database
from ..store.jobs import Job, Task
from ..store.models import utcnow
from . import defaults
from .claim import stale_tasks, write_session
from .queue import QueueBackend
from .runner import after_task, task_timeout
from .status import JobKind, JobStatus, TaskStatus, priority

__all__ = ["Sweeper", "sweep"]

log = logging.getLogger(__name__)


def sweep(
    database: Database,
    backend: QueueBackend,
    *,
    stale_after: float | None = None,
    include_pending: bool = False,
    owner: str | None = None,
    dead_local: bool = False,
) -> list[int]:
    """Re-queue dead tasks (and, with ``include_pending``, every PENDING task of a runnable
    job, for a backend that starts empty); returns the task ids queued.

    ``owner`` limits the sweep to one user's jobs: an inline runner in a notebook kernel
    runs only its own user's tasks, never another user's in this user's process.
    ``dead_local`` also takes back at once the tasks of processes of this host that
    have ended (a local worker that was killed), without waiting for their heartbeat
    to go stale.
    """
    if stale_after is None:
        stale_after = defaults.STALE_AFTER
    requeue: list[tuple[int, int, str, bool]] = []
    touched_jobs: set[int] = set()
    with write_session(database) as session:
        for task in stale_tasks(session, stale_after, dead_local=dead_local):
            job = session.get(Job, task.job_id)
            if job is None or (owner is not None and job.owner != owner):
                continue
            final = task.attempts >= defaults.MAX_ATTEMPTS
            values = (
                {
                    "status": TaskStatus.CANCELED.value,
                    "ended": utcnow(),
                    "message": "Task was canceled (its worker had stopped).",
                }
                if job.status == JobStatus.CANCELING.value
                else {
                    "status": TaskStatus.FAILURE.value,
                    "ended": utcnow(),
                    "message": f"The worker died {task.attempts} times running this task.",
                }
                if final
                else {
                    "status": TaskStatus.PENDING.value,
                    "worker": None,
                    "heartbeat": None,
                    "started": None,
                    "message": "The worker stopped responding; task re-queued.",
                }
            )
            changed = session.execute(
                update(Task)
                .where(Task.id == task.id, Task.status == TaskStatus.IN_PROGRESS.value)
                .where(Task.worker == task.worker)
                .where(Task.heartbeat == task.heartbeat if task.heartbeat else Task.id == task.id)
                .values(
                    log=task.log + f"worker {task.worker} lost (attempt {task.attempts})\n",
                    **values,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if changed != 1:
                continue
            touched_jobs.add(job.id)
            if values["status"] == TaskStatus.PENDING.value:
                requeue.append((task.id, job.id, job.kind, job.urgent))
        if include_pending:
            rows = session.execute(
                select(Task.id, Job.id, Job.kind, Job.urgent)
                .join(Job, Job.id == Task.job_id)
                .where(Task.status == TaskStatus.PENDING.value)
                .where(Job.status.in_([JobStatus.PENDING.value, JobStatus.IN_PROGRESS.value]))
                .where(Job.owner == owner if owner is not None else Job.id.is_not(None))
            )
            known = {r[0] for r in requeue}
            requeue.extend(tuple(r) for r in rows if r[0] not in known)  # type: ignore[misc]
    for task_id, _job_id, kind, urgent in requeue:
        k = JobKind(kind)
        backend.enqueue(task_id, priority=priority(k, urgent), timeout=task_timeout(k))
    for job_id in touched_jobs:
        after_task(database, job_id)
    if requeue:
        log.info("sweeper queued %d task(s)", len(requeue))
    return [r[0] for r in requeue]


class Sweeper:
    """A daemon thread that sweeps every ``interval`` seconds (one per worker process)."""

    def __init__(
        self,
        database: Database,
        backend: QueueBackend,
        *,
        interval: float = defaults.SWEEP_INTERVAL,
        stale_after: float = defaults.STALE_AFTER,
    ) -> None:
        self.database = database
        self.backend = backend
        self.interval = interval
        self.stale_after = stale_after
        self._stop = threading.Event()
        #: Held while a sweep has the database open. A process that forks must hold it
        #: too: a child forked while SQLite holds a lock here inherits SQLite's in-process
        #: record of that lock, not the lock, and every write it tries is "database is
        #: locked" until the child ends.
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="wb-sweeper", daemon=True)

    def start(self) -> Sweeper:
        """Start sweeping in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current sweep."""
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.lock:
                    sweep(self.database, self.backend, stale_after=self.stale_after)
            except Exception:  # keep sweeping; the next round may succeed
                log.warning("sweep failed", exc_info=True)
