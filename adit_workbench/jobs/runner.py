"""Run one task: claim it, check the owner's rights again, heartbeat, execute, record.

The same function runs under an RQ worker (:mod:`.worker`) and in the inline pool
(:class:`~.queue.InlineBackend`). Outcomes, as in ADIT:

* canceled → CANCELED "Task was canceled.";
* a retriable error (a node unreachable, busy or timing out) before the last attempt →
  PENDING again and re-queued after a pause, the reason in the log;
* any other error → FAILURE with the error's message (written for people, free of PHI),
  the traceback in the task's log;
* outside the task's time window → left PENDING and re-queued when the window opens.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..access import Access, NodeRole, Permission
from ..errors import WorkbenchError
from . import defaults
from .claim import ClaimedTask, claim_task, finish_task, heartbeat, refresh_job_status, worker_id
from .schedule import seconds_until_open
from .status import JobKind, JobStatus, TaskStatus, priority

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database
    from .queue import QueueBackend

__all__ = ["Canceled", "TaskContext", "TaskOutcome", "cancel_local", "run_task"]

log = logging.getLogger(__name__)

#: Cancel events of the tasks running in this process, so that a cancel from the same
#: process (the inline runner) stops a task at once instead of at its next heartbeat.
_LOCAL_CANCEL: dict[int, threading.Event] = {}
_LOCAL_LOCK = threading.Lock()
#: Set when this process stops its runner: interrupted tasks go back to PENDING.
_SHUTDOWN = threading.Event()

SHUTDOWN_MESSAGE = "The worker stopped; the task runs again when a worker starts."


class Canceled(WorkbenchError):
    """The task was asked to stop (its job is being canceled)."""


@dataclass
class TaskOutcome:
    """What an executor reports: a final status and a message for people."""

    status: TaskStatus
    message: str
    log: str = ""


@dataclass
class TaskContext:
    """What an executor gets: the claimed task, its database, settings and a cancel flag."""

    database: Database
    settings: Settings
    claimed: ClaimedTask
    worker: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    #: Warnings an executor collects for the task's message.
    notes: list[str] = field(default_factory=list)
    #: Instances delivered per modality (transfers), stored when the task ends.
    modalities: Counter[str] = field(default_factory=Counter)

    @property
    def task(self) -> dict[str, Any]:
        """The task row's values at claim time."""
        return self.claimed.task

    @property
    def job(self) -> dict[str, Any]:
        """The job row's values at claim time."""
        return self.claimed.job

    def progress(
        self,
        done: int,
        total: int | None = None,
        *,
        bytes_done: int | None = None,
        bytes_total: int | None = None,
    ) -> None:
        """Record progress (instances, bytes); it reaches the database with the next beat."""
        self.done = done
        if total is not None:
            self.total = total
        if bytes_done is not None:
            self.bytes_done = bytes_done
        if bytes_total is not None:
            self.bytes_total = bytes_total

    def cancelled(self) -> bool:
        """Whether the task should stop now."""
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        """Raise :class:`Canceled` if the task should stop."""
        if self.cancel_event.is_set():
            raise Canceled("Task was canceled.")


Executor = Callable[[TaskContext], TaskOutcome]


def cancel_local(task_ids: list[int]) -> None:
    """Stop tasks of this process now (others stop at their next heartbeat)."""
    with _LOCAL_LOCK:
        for task_id in task_ids:
            event = _LOCAL_CANCEL.get(task_id)
            if event is not None:
                event.set()


def begin_shutdown() -> None:
    """This process stops running tasks: each stops at its next instance and is recorded
    PENDING (its attempt not counted), never FAILED or CANCELED."""
    _SHUTDOWN.set()
    with _LOCAL_LOCK:
        for event in _LOCAL_CANCEL.values():
            event.set()


def shutting_down() -> bool:
    """Whether this process is stopping its runner (or the interpreter is exiting)."""
    return _SHUTDOWN.is_set() or sys.is_finalizing()


def _job_canceling(database: Database, job_id: int) -> bool:
    from sqlalchemy import select

    from ..store.jobs import Job

    with database.session() as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
    return status in (None, JobStatus.CANCELING.value, JobStatus.CANCELED.value)


def _check_rights(ctx: TaskContext) -> None:
    """The owner's rights as of now: revoked since the job was created means no run."""
    access = Access(ctx.database, ctx.claimed.owner)
    kind = JobKind(ctx.claimed.kind)
    action = f"task.start.{kind.value}"
    access.require(Permission(kind.value), action=action)
    if ctx.task.get("source"):
        access.require_node(ctx.task["source"], NodeRole.SOURCE, action=action)
    if kind.is_transfer and ctx.task.get("destination"):
        access.require_node(ctx.task["destination"], NodeRole.DESTINATION, action=action)
    if kind.is_transfer and not ctx.job.get("pseudonymize", True):
        access.require(Permission.TRANSFER_UNPSEUDONYMIZED, action=action)


def _executor(kind: str) -> Executor:
    from . import execute

    return execute.EXECUTORS[JobKind(kind)]


def _beat(ctx: TaskContext, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            owner, cancel = heartbeat(
                ctx.database,
                ctx.claimed.id,
                ctx.worker,
                done=ctx.done,
                total=ctx.total,
                bytes_done=ctx.bytes_done,
                bytes_total=ctx.bytes_total,
            )
        except WorkbenchError:  # a database hiccup: try again at the next beat
            log.warning("heartbeat of task %s failed", ctx.claimed.id)
            continue
        if cancel or not owner:
            ctx.cancel_event.set()


def run_task(
    database: Database,
    settings: Settings,
    task_id: int,
    *,
    backend: QueueBackend | None = None,
    worker: str | None = None,
    heartbeat_interval: float | None = None,
) -> TaskStatus | None:
    """Run task ``task_id`` if it can be claimed; returns its new status (None: not ours)."""
    worker = worker or worker_id()
    claimed = claim_task(database, task_id, worker)
    if claimed is None:
        return None
    ctx = TaskContext(database, settings, claimed, worker)
    kind = JobKind(claimed.kind)
    wait = seconds_until_open(kind, [claimed.task.get("source"), claimed.task.get("destination")])
    if wait > 0 and backend is not None:
        _requeue(ctx, backend, wait, "Waiting for the time window of this job kind or node.")
        return TaskStatus.PENDING
    with _LOCAL_LOCK:
        _LOCAL_CANCEL[task_id] = ctx.cancel_event
    stop = threading.Event()
    interval = defaults.HEARTBEAT_INTERVAL if heartbeat_interval is None else heartbeat_interval
    beater = threading.Thread(
        target=_beat, args=(ctx, stop, interval), name=f"beat-{task_id}", daemon=True
    )
    beater.start()
    retry_after = 0.0
    try:
        _check_rights(ctx)
        outcome = _executor(claimed.kind)(ctx)
    except Canceled:
        outcome = TaskOutcome(TaskStatus.CANCELED, "Task was canceled.")
    except WorkbenchError as exc:
        text = str(exc) or type(exc).__name__
        if exc.retriable:
            # A configuration error (a folder that does not exist) is final, however the
            # layer below classed it: trying again in two minutes will not create it.
            from .preflight import configuration_problem

            problem = configuration_problem(
                database, kind, claimed.task.get("source"), claimed.task.get("destination")
            )
            if problem is not None:
                text, exc.retriable = problem, False
        if exc.retriable and claimed.attempts < defaults.MAX_ATTEMPTS and backend is not None:
            retry_after = _retry_delay(claimed.attempts)
            outcome = TaskOutcome(
                TaskStatus.PENDING,
                f"Retry {claimed.attempts} of {defaults.MAX_ATTEMPTS - 1} in "
                f"{retry_after:.0f} s: {text}",
                f"attempt {claimed.attempts}: {text}\n",
            )
        else:
            outcome = TaskOutcome(TaskStatus.FAILURE, text, f"attempt {claimed.attempts}: {text}\n")
    except Exception as exc:
        outcome = TaskOutcome(
            TaskStatus.FAILURE,
            f"Unexpected error ({type(exc).__name__}); see the task log.",
            traceback.format_exc(),
        )
    finally:
        stop.set()
        beater.join(timeout=5)
        with _LOCAL_LOCK:
            _LOCAL_CANCEL.pop(task_id, None)
    uncount = False
    if (
        shutting_down()
        and outcome.status in (TaskStatus.CANCELED, TaskStatus.FAILURE, TaskStatus.PENDING)
        and not _job_canceling(database, claimed.job_id)
    ):
        # Stopped by a shutdown, not by the user or the task's own failure.
        outcome = TaskOutcome(TaskStatus.PENDING, SHUTDOWN_MESSAGE, "worker stopped\n")
        uncount, retry_after = True, 0.0
    if outcome.log and not outcome.log.startswith("attempt "):
        outcome.log = f"attempt {claimed.attempts}: {outcome.log}"
    finished = finish_task(
        database,
        task_id,
        worker,
        outcome.status,
        outcome.message,
        outcome.log,
        done=ctx.done,
        total=ctx.total,
        bytes_done=ctx.bytes_done,
        bytes_total=ctx.bytes_total,
        modalities=dict(ctx.modalities) if ctx.modalities else None,
        uncount=uncount,
    )
    if not finished:
        log.warning("task %s was taken over while running; its outcome is dropped", task_id)
        return None
    if outcome.status is TaskStatus.PENDING and backend is not None and not uncount:
        backend.enqueue(
            task_id,
            priority=priority(kind, bool(claimed.job.get("urgent"))),
            timeout=task_timeout(kind),
            delay=retry_after,
        )
    after_task(database, claimed.job_id)
    return outcome.status


def _retry_delay(attempt: int) -> float:
    """Seconds before a retriable failure is tried again (ADIT: 2, 4, 6 minutes)."""
    return 120.0 * attempt


def task_timeout(kind: JobKind) -> int:
    """The queue timeout of a task of ``kind`` (seconds)."""
    if kind is JobKind.MASS_TRANSFER:
        return defaults.MASS_TRANSFER_TASK_TIMEOUT
    return defaults.TASK_TIMEOUT


def _requeue(ctx: TaskContext, backend: QueueBackend, delay: float, message: str) -> None:
    """Give the claim back (attempt not counted) and queue the task for later."""
    from sqlalchemy import update

    from ..store.jobs import Task

    with ctx.database.session() as session:
        session.execute(
            update(Task)
            .where(Task.id == ctx.claimed.id, Task.worker == ctx.worker)
            .values(
                status=TaskStatus.PENDING.value,
                attempts=Task.attempts - 1,
                worker=None,
                heartbeat=None,
                started=None,
                message=message,
            )
            .execution_options(synchronize_session=False)
        )
    kind = JobKind(ctx.claimed.kind)
    backend.enqueue(
        ctx.claimed.id,
        priority=priority(kind, bool(ctx.job.get("urgent"))),
        timeout=task_timeout(kind),
        delay=delay,
    )
    after_task(ctx.database, ctx.claimed.job_id)


def after_task(database: Database, job_id: int) -> JobStatus | None:
    """Derive the job's status; send the finished mail when the job has just ended."""
    result = refresh_job_status(database, job_id)
    if result is None:
        return None
    status, became_final = result
    if became_final:
        from .mail import send_finished_mail

        try:
            send_finished_mail(database, job_id)
        except Exception:  # mail is a courtesy; the job's outcome stands
            log.warning("finished mail for job %s could not be sent", job_id, exc_info=True)
    return status
