"""RQ workers: the job function RQ runs, and the worker loop behind ``adit-workbench worker``.

RQ imports :func:`process_task` by name in each work-horse (a fork per job by default),
so it takes only the task id and the queue prefix: the database and settings come from
the worker's own environment, never through Redis (no credentials in queue entries).
Each worker process also runs a :class:`~.sweeper.Sweeper`; several sweepers are safe.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from . import defaults
from .queue import RQBackend, queue_names

if TYPE_CHECKING:
    from ..store import Database

__all__ = ["process_task", "run_worker"]

log = logging.getLogger(__name__)


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
    from rq import Queue, SimpleWorker, Worker

    from .sweeper import Sweeper, sweep

    backend = RQBackend(redis_url, prefix=prefix)
    database = _database()
    queues = [Queue(n, connection=backend.connection) for n in queue_names(prefix)]
    cls: Any = SimpleWorker if simple else Worker
    worker = cls(queues, connection=backend.connection, name=name)
    sweep(database, backend, stale_after=stale_after)
    sweeper = Sweeper(database, backend, interval=sweep_interval, stale_after=stale_after)
    sweeper.start()
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
    finally:
        sweeper.stop()
