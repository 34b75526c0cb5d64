"""Queue backends: RQ on Redis, or an inline thread pool in the current process.

Both put one entry per task (never per instance) and share the semantics that matter:
higher priority first (ADIT's numbers, :func:`~.status.priority`), entries may run late
(``delay``), and a duplicate entry is harmless because the database claim decides who
runs a task (:mod:`.claim`). RQ has no numeric priorities: each priority is a queue
``<prefix>-<n>`` and workers listen to them highest first.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from . import defaults

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database

__all__ = ["InlineBackend", "QueueBackend", "RQBackend", "queue_names"]

log = logging.getLogger(__name__)

PRIORITY_LEVELS = tuple(range(8, 0, -1))


def queue_names(prefix: str = defaults.QUEUE_PREFIX) -> list[str]:
    """The RQ queue names, highest priority first (the order a worker listens in)."""
    return [f"{prefix}-{n}" for n in PRIORITY_LEVELS]


class QueueBackend(Protocol):
    """Where queued tasks wait for a worker."""

    name: str

    def enqueue(self, task_id: int, *, priority: int, timeout: int, delay: float = 0) -> None:
        """Queue one task (``delay`` seconds from now)."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...


def _retry() -> Any:
    """RQ's retry of an entry whose run raised (claiming it failed, not the task)."""
    from rq import Retry

    intervals = list(defaults.QUEUE_RETRY_INTERVALS)
    return Retry(max=len(intervals), interval=intervals) if intervals else None


class RQBackend:
    """RQ queues on Redis; ``adit-workbench worker`` processes (any number, any host) run them.

    Parameters
    ----------
    redis_url:
        Redis URL (the password, if any, stays out of reprs and errors).
    prefix:
        Queue-name prefix; tests use their own to stay apart on a shared Redis.
    """

    name = "rq"

    def __init__(self, redis_url: str, *, prefix: str = defaults.QUEUE_PREFIX) -> None:
        from redis import Redis

        self.prefix = prefix
        self.connection = Redis.from_url(redis_url)

    @classmethod
    def from_connection(cls, connection: Any, *, prefix: str = defaults.QUEUE_PREFIX) -> RQBackend:
        """A backend on an existing Redis connection (a worker re-queueing a retry)."""
        backend = cls.__new__(cls)
        backend.prefix = prefix
        backend.connection = connection
        return backend

    def __repr__(self) -> str:
        return f"<RQBackend prefix={self.prefix!r}>"

    def queue(self, priority: int) -> Any:
        """The RQ queue of ``priority`` (1–8)."""
        from rq import Queue

        level = min(max(int(priority), 1), 8)
        return Queue(f"{self.prefix}-{level}", connection=self.connection)

    def enqueue(self, task_id: int, *, priority: int, timeout: int, delay: float = 0) -> None:
        """Queue ``process_task(task_id)`` on the queue of ``priority``."""
        from datetime import timedelta

        queue = self.queue(priority)
        kwargs: dict[str, Any] = {
            "args": (task_id, self.prefix),
            "job_timeout": timeout,
            "job_id": f"{self.prefix}-task-{task_id}-{uuid.uuid4().hex[:8]}",
            "result_ttl": 3600,
            "failure_ttl": 7 * 24 * 3600,
            "description": f"task {task_id}",
            "retry": _retry(),
        }
        func = "adit_workbench.jobs.worker.process_task"
        if delay > 0:
            queue.enqueue_in(timedelta(seconds=delay), func, **kwargs)
        else:
            queue.enqueue(func, **kwargs)

    def enqueue_many(self, task_ids: list[int], *, priority: int, timeout: int) -> None:
        """Queue many tasks of one priority in one Redis round trip (a 10,000-row file)."""
        from rq import Queue

        queue = self.queue(priority)
        data = [
            Queue.prepare_data(
                "adit_workbench.jobs.worker.process_task",
                args=(task_id, self.prefix),
                timeout=timeout,
                result_ttl=3600,
                failure_ttl=7 * 24 * 3600,
                description=f"task {task_id}",
                retry=_retry(),
                job_id=f"{self.prefix}-task-{task_id}-{uuid.uuid4().hex[:8]}",
            )
            for task_id in task_ids
        ]
        for start in range(0, len(data), 1000):
            with self.connection.pipeline() as pipe:
                queue.enqueue_many(data[start : start + 1000], pipeline=pipe)
                pipe.execute()

    def alive(self) -> bool:
        """Whether at least one RQ worker listens to one of these queues."""
        from rq import Worker

        names = set(queue_names(self.prefix))
        try:
            workers = Worker.all(connection=self.connection)
        except Exception:  # Redis unreachable: say so through the next enqueue, not here
            return True
        return any(names & set(w.queue_names()) for w in workers)

    def describe_dead(self) -> str:
        """Why nothing runs the tasks."""
        return (
            f"no RQ worker listens to the queues {self.prefix}-1…8: start one with "
            "`adit-workbench worker` (it needs ADIT_WB_REDIS_URL)"
        )

    def close(self) -> None:
        """Close the Redis connection pool."""
        self.connection.close()


def _shutdown_runner() -> None:
    from .runner import begin_shutdown

    begin_shutdown()


class InlineBackend:
    """A priority queue served by a few threads of this process: no Redis needed.

    Tasks run while the Python process lives; pending tasks of a process that ended are
    picked up by the next one's sweep (:func:`.sweeper.sweep`). Notebooks and the CLI use
    the local worker process instead (:mod:`.local`): a kernel is no place for a job.
    """

    name = "inline"

    def __init__(
        self, database: Database, settings: Settings, *, workers: int = defaults.INLINE_WORKERS
    ) -> None:
        self.database = database
        self.settings = settings
        self._heap: list[tuple[int, int, int]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0
        self._threads = [
            threading.Thread(target=self._serve, name=f"wb-inline-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()
        # At interpreter exit, running tasks are put back to PENDING, not failed.
        atexit.register(_shutdown_runner)

    def __repr__(self) -> str:
        return f"<InlineBackend workers={len(self._threads)} queued={len(self._heap)}>"

    def enqueue(self, task_id: int, *, priority: int, timeout: int, delay: float = 0) -> None:
        """Queue a task; with ``delay`` it joins the queue that many seconds later."""
        if delay > 0:
            timer = threading.Timer(
                delay, self.enqueue, args=(task_id,), kwargs={"priority": priority, "timeout": 0}
            )
            timer.daemon = True
            timer.start()
            return
        with self._cond:
            heapq.heappush(self._heap, (-priority, next(self._seq), task_id))
            self._cond.notify()

    def alive(self) -> bool:
        """Whether the pool still serves (not closed, its threads running)."""
        return not self._closed and any(t.is_alive() for t in self._threads)

    def idle(self) -> bool:
        """True when nothing is queued or running here."""
        with self._cond:
            return not self._heap and not self._busy

    def join(self, timeout: float = 60) -> bool:
        """Wait until idle (tests and scripts); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.02)
        return self.idle()

    def close(self) -> None:
        """Stop the threads after their current task (queued tasks stay PENDING in the DB)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _serve(self) -> None:
        from .runner import run_task

        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                _, _, task_id = heapq.heappop(self._heap)
                self._busy += 1
            try:
                run_task(self.database, self.settings, task_id, backend=self)
            except Exception:  # a runner bug must not kill the pool thread
                log.exception("inline runner failed on task %s", task_id)
            finally:
                with self._cond:
                    self._busy -= 1
