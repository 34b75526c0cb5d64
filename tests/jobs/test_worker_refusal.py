"""Workers execute only the project's task function (real Redis, real forking worker).

Whoever reaches the shared Redis can enqueue an RQ job naming any importable callable, or
a pickle that runs code while it is read. Each such job must end FAILED with the reason,
and the file its code would create must never appear; a real task still runs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adit_workbench.config import get_settings
from adit_workbench.jobs import worker
from adit_workbench.jobs.queue import RQBackend, queue_names
from adit_workbench.jobs.worker import TASK_FUNCTION, PlainDataSerializer, run_worker

_prefixes = itertools.count(1)


class _Evil:
    """Pickles to ``os.system(command)``: runs when a plain unpickler reads it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


@pytest.fixture
def rq(redis_url: str, data_dir: Path) -> Iterator[tuple[str, RQBackend]]:
    """A queue prefix of this test's own, and a worker database (embedded, in data_dir)."""
    prefix = f"refuse{os.getpid()}-{next(_prefixes)}"
    get_settings.cache_clear()
    worker._database.cache_clear()
    backend = RQBackend(redis_url, prefix=prefix)
    yield prefix, backend
    backend.close()
    worker._database.cache_clear()


def _fetch(backend: RQBackend, job_id: str) -> Any:
    from rq.job import Job

    return Job.fetch(job_id, connection=backend.connection, serializer=PlainDataSerializer)


def test_foreign_callables_are_refused_and_never_run(
    rq: tuple[str, RQBackend], redis_url: str, tmp_path: Path
) -> None:
    from rq import Callback, Queue

    prefix, backend = rq
    queue = Queue(queue_names(prefix)[0], connection=backend.connection)  # RQ's own pickle
    out = tmp_path / "marks"
    out.mkdir()
    marks = {name: out / name for name in ("system", "evil-arg", "evil-meta", "kwargs")}
    jobs = {
        "system": queue.enqueue("os.system", f"touch {marks['system']}"),
        "evil-arg": queue.enqueue(TASK_FUNCTION, _Evil(f"touch {marks['evil-arg']}"), prefix),
        "evil-meta": queue.enqueue(
            TASK_FUNCTION, 1, prefix, meta={"x": _Evil(f"touch {marks['evil-meta']}")}
        ),
        "kwargs": queue.enqueue(TASK_FUNCTION, 1, prefix, shell=f"touch {marks['kwargs']}"),
        "subprocess": queue.enqueue("subprocess.call", ["touch", str(out / "sub")]),
        "callback": queue.enqueue(TASK_FUNCTION, 1, prefix, on_success=Callback("os.abort")),
        "odd-meta": queue.enqueue(TASK_FUNCTION, 1, prefix, meta=7),
    }
    run_worker(redis_url, prefix=prefix, burst=True)

    assert not list(out.iterdir()), "a foreign job ran inside the worker"
    reasons = {}
    for name, job in jobs.items():
        fetched = _fetch(backend, job.id)
        assert fetched.get_status() == "failed", name
        reasons[name] = fetched.latest_result().exc_string
    assert "it names 'os.system'; workers run only " + TASK_FUNCTION in reasons["system"]
    assert "it names 'subprocess.call'" in reasons["subprocess"]
    assert "not plain data" in reasons["evil-arg"] and "not plain data" in reasons["evil-meta"]
    assert "(task id, queue prefix) and nothing else" in reasons["kwargs"]
    assert "it carries callbacks" in reasons["callback"]
    assert "not plain data" in reasons["odd-meta"]


def test_the_projects_own_task_still_runs(rq: tuple[str, RQBackend], redis_url: str) -> None:
    prefix, backend = rq
    backend.enqueue(12345, priority=8, timeout=60)  # no such task: runs and returns None
    [job_id] = backend.queue(8).job_ids
    run_worker(redis_url, prefix=prefix, burst=True)
    job = _fetch(backend, job_id)
    assert job.get_status() == "finished"
