"""RQ workers: the job function RQ runs, and the worker loop behind ``adit-workbench worker``.

RQ imports :func:`process_task` by name in each work-horse (a fork per job by default),
so it takes only the task id and the queue prefix: the database and settings come from
the worker's own environment, never through Redis (no credentials in queue entries).
Each worker process also runs a :class:`~.sweeper.Sweeper`; several sweepers are safe.

Workers execute only the project's task function. Redis is shared, and whoever can reach
it can enqueue a job naming any importable callable (``os.system``) or carrying a pickle
that runs code while it is read. So the worker reads job payloads with
:class:`PlainDataSerializer` (a pickle may hold only plain data: no class or function is
ever looked up) and refuses, before running anything, every job that names another
callable, an instance, callbacks, or arguments of the wrong shape: such a job is marked
failed with the reason (:func:`refusal`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import re
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import WorkbenchError
from . import defaults
from .queue import RQBackend, queue_names

if TYPE_CHECKING:
    from ..store import Database

__all__ = ["TASK_FUNCTION", "PlainDataSerializer", "process_task", "refusal", "run_worker"]

log = logging.getLogger(__name__)

#: The one callable a worker runs (what :class:`~.queue.RQBackend` enqueues).
TASK_FUNCTION = "adit_workbench.jobs.worker.process_task"

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Every code-running pickle needs a global (a class or function) first.
        raise pickle.UnpicklingError(f"job payload refers to {module}.{name}")


class PlainDataSerializer:
    """RQ serializer: writes pickles (as RQ's default does) and reads only plain data.

    Queue entries hold ``(function name, None, (task id, prefix), {})``: strings, numbers,
    tuples and dicts, which need no global; a payload naming any class or function fails
    to load instead of running it (the "restricting globals" recipe of :mod:`pickle`).
    """

    @staticmethod
    def dumps(obj: Any) -> bytes:
        """Pickle ``obj`` (plain data in practice)."""
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> Any:
        """Unpickle ``data``, refusing every global it names."""
        return _PlainUnpickler(io.BytesIO(data)).load()


def refusal(job: Any) -> str | None:
    """Why a worker must not run ``job`` (an RQ job), or None for a task of this project."""
    try:
        return _refusal(job)
    except Exception:  # any oddity of a crafted entry is a refusal, never a crash
        return "refused: its payload is not plain data (workers run only the project's task)"


def _refusal(job: Any) -> str | None:
    from rq.exceptions import DeserializationError

    try:
        name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except (DeserializationError, pickle.UnpicklingError, ValueError, TypeError):
        name = None
    # RQ keeps a meta it could not read as {"unserialized": raw bytes}.
    meta = job.meta
    if name is None or not isinstance(meta, dict) or "unserialized" in meta:
        return "refused: its payload is not plain data (workers run only the project's task)"
    if name != TASK_FUNCTION or instance is not None:
        return f"refused: it names {name!r}; workers run only {TASK_FUNCTION}"
    callbacks = ("success", "failure", "stopped")
    if any(getattr(job, f"_{which}_callback_name", None) for which in callbacks):
        return "refused: it carries callbacks; workers run only the project's task"
    shape_ok = (
        isinstance(args, (list, tuple))
        and len(args) in (1, 2)
        and isinstance(args[0], int)
        and not isinstance(args[0], bool)
        and (len(args) == 1 or (isinstance(args[1], str) and _PREFIX.fullmatch(args[1])))
        and not kwargs
    )
    if not shape_ok:
        return "refused: a task takes (task id, queue prefix) and nothing else"
    return None


def _worker_class(simple: bool) -> Any:
    """RQ's Worker (or SimpleWorker) that refuses every job :func:`refusal` names."""
    from rq import SimpleWorker, Worker

    base: Any = SimpleWorker if simple else Worker

    class TaskWorker(base):
        #: Held around each fork (see :attr:`.sweeper.Sweeper.lock`).
        fork_guard: threading.Lock | None = None

        def fork_work_horse(self, job: Any, queue: Any) -> None:
            with self.fork_guard or contextlib.nullcontext():
                super().fork_work_horse(job, queue)

        def execute_job(self, job: Any, queue: Any) -> None:
            reason = refusal(job)
            if reason is None:
                super().execute_job(job, queue)
                return
            log.warning("job %s on %s %s", job.id, queue.name, reason)
            self.prepare_execution(job)
            self.handle_job_failure(job, queue, exc_string=reason)
            self.set_state("idle")

    return TaskWorker


@lru_cache(maxsize=1)
def _database() -> Database:
    from ..config import get_settings
    from ..store import open_database

    return open_database(get_settings())


def process_task(task_id: int, prefix: str = defaults.QUEUE_PREFIX) -> str | None:
    """RQ job function: run one task (a no-op if another worker has it or it is done)."""
    from rq import get_current_job

    from ..config import get_settings
    from .runner import run_task

    current = get_current_job()
    if current is None:
        from ..errors import ConfigurationError

        raise ConfigurationError("process_task runs inside an RQ worker")
    backend = RQBackend.from_connection(current.connection, prefix=prefix)
    status = run_task(_database(), get_settings(), task_id, backend=backend)
    return None if status is None else status.value


def run_worker(
    redis_url: str,
    *,
    prefix: str = defaults.QUEUE_PREFIX,
    burst: bool = False,
    simple: bool = False,
    name: str | None = None,
    sweep_interval: float = defaults.SWEEP_INTERVAL,
    stale_after: float = defaults.STALE_AFTER,
) -> bool:
    """Work the queues (highest priority first) until stopped, or until empty with ``burst``.

    ``simple`` runs jobs in this process (rq's SimpleWorker) instead of a fork per job.
    """
    from rq import Queue

    from .sweeper import Sweeper, sweep

    backend = RQBackend(redis_url, prefix=prefix)
    database = _database()
    serializer = PlainDataSerializer
    queues = [
        Queue(n, connection=backend.connection, serializer=serializer) for n in queue_names(prefix)
    ]
    worker = _worker_class(simple)(
        queues, connection=backend.connection, name=name, serializer=serializer
    )
    try:
        sweep(database, backend, stale_after=stale_after)
    except WorkbenchError:  # the database is busy or down: the sweeper tries again
        log.warning("first sweep failed", exc_info=True)
    sweeper = Sweeper(database, backend, interval=sweep_interval, stale_after=stale_after)
    worker.fork_guard = sweeper.lock
    sweeper.start()
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
    finally:
        sweeper.stop()
