"""The local worker process (``python -m adit_workbench.jobs.serve --root DIR``).

Started by :func:`.local.start_worker`, never by hand. A few threads take PENDING tasks
of runnable jobs from the database (highest priority first, ``not_before`` respected)
and run them through :func:`.runner.run_task`, the same function an RQ worker runs. On
SIGTERM or SIGINT it stops taking tasks, asks the running ones to stop at their next
instance and records them PENDING (never FAILED), so that the next worker resumes them.
It exits by itself after :data:`~.defaults.LOCAL_WORKER_IDLE_EXIT` seconds without work.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from ..locks import folder_lock
from ..store.jobs import Job, Task
from ..store.models import utcnow
from . import defaults
from .local import hold_until, read_state, write_state
from .runner import begin_shutdown, run_task
from .status import JobStatus, TaskStatus, priority
from .sweeper import Sweeper, sweep

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database

__all__ = ["LocalWorker", "main"]

log = logging.getLogger(__name__)

_RUNNABLE = (JobStatus.PENDING.value, JobStatus.IN_PROGRESS.value)


class LocalWorker:
    """Threads that run the PENDING tasks of a database; the queue backend of their retries."""

    name = "local"

    def __init__(
        self,
        database: Database,
        settings: Settings,
        root: Path,
        *,
        threads: int = defaults.INLINE_WORKERS,
        poll: float = defaults.LOCAL_WORKER_POLL,
        idle_exit: float = defaults.LOCAL_WORKER_IDLE_EXIT,
    ) -> None:
        self.database = database
        self.settings = settings
        self.root = root
        self.threads = max(1, threads)
        self.poll = poll
        self.idle_exit = idle_exit
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._taken: set[int] = set()

    # -- the backend side (the runner re-queues retries through it) ----------------------
    def enqueue(self, task_id: int, *, priority: int, timeout: int, delay: float = 0) -> None:
        """A retry or a task outside its window: hold it ``delay`` seconds."""
        if delay > 0:
            hold_until(self.database, task_id, delay)

    def close(self) -> None:
        """Stop taking tasks."""
        self._stop.set()

    def alive(self) -> bool:
        """This worker is the runner."""
        return not self._stop.is_set()

    # -- taking tasks ----------------------------------------------------------------
    def _candidates(self, limit: int = 50) -> list[int]:
        now = utcnow()
        with self.database.session() as session:
            rows = list(
                session.execute(
                    select(Task.id, Job.kind, Job.urgent)
                    .join(Job, Job.id == Task.job_id)
                    .where(Task.status == TaskStatus.PENDING.value, Job.status.in_(_RUNNABLE))
                    .where(or_(Task.not_before.is_(None), Task.not_before <= now))
                    .order_by(Task.id)
                    .limit(limit)
                )
            )
        rows.sort(key=lambda r: (-priority(r[1], bool(r[2])), r[0]))
        return [r[0] for r in rows]

    def _next(self) -> int | None:
        with self._lock:
            for task_id in self._candidates():
                if task_id not in self._taken:
                    self._taken.add(task_id)
                    return task_id
        return None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                task_id = self._next()
            except Exception:  # a database hiccup: try again shortly
                log.warning("could not read the task queue", exc_info=True)
                task_id = None
            if task_id is None:
                self._stop.wait(self.poll)
                continue
            try:
                run_task(
                    self.database,
                    self.settings,
                    task_id,
                    backend=self,
                    heartbeat_interval=defaults.LOCAL_HEARTBEAT_INTERVAL,
                )
            except Exception:  # a runner bug must not kill the thread
                log.exception("task %s: runner failed", task_id)
            finally:
                with self._lock:
                    self._taken.discard(task_id)

    def _has_work(self) -> bool:
        with self.database.session() as session:
            found = session.scalar(
                select(Task.id)
                .join(Job, Job.id == Task.job_id)
                .where(Task.status.in_([TaskStatus.PENDING.value, TaskStatus.IN_PROGRESS.value]))
                .where(Job.status.in_([*_RUNNABLE, JobStatus.CANCELING.value]))
                .limit(1)
            )
        return found is not None

    def _beat(self) -> None:
        state = read_state(self.root)
        if state.get("pid") not in (None, os.getpid()):
            return  # another worker was started (this one was presumed dead): leave its file
        write_state(self.root, {**state, "pid": os.getpid(), "beat": time.time()})

    def _idle_exit(self) -> bool:
        """Exit if there is no work, holding the start lock so nothing is stranded."""
        with folder_lock(self.root):
            if self._has_work():
                return False
            pid_file = self.root / "worker.pid"
            try:
                mine = int(pid_file.read_text().strip()) == os.getpid()
            except (OSError, ValueError):
                mine = False
            if mine:
                pid_file.unlink(missing_ok=True)
            self._stop.set()
            return True

    def run(self) -> None:
        """Work until stopped (SIGTERM, SIGINT) or idle for ``idle_exit`` seconds."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: self._stop.set())
        # Tasks of a worker that died (killed, machine rebooted) run again at once.
        sweep(self.database, self, dead_local=True)
        self._reset_holds()
        sweeper = Sweeper(self.database, self, interval=defaults.SWEEP_INTERVAL).start()
        pool = [
            threading.Thread(target=self._serve, name=f"wb-local-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for thread in pool:
            thread.start()
        idle_since = time.monotonic()
        try:
            while not self._stop.wait(defaults.LOCAL_HEARTBEAT_INTERVAL):
                if not self.root.exists():  # its data directory was removed
                    log.warning("%s is gone: the local worker exits", self.root)
                    break
                self._beat()
                with self._lock:
                    busy = bool(self._taken)
                if busy:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > self.idle_exit:
                    if self._idle_exit():
                        log.warning("no work for %.0f s: the local worker exits", self.idle_exit)
                    else:
                        idle_since = time.monotonic()
        finally:
            self._stop.set()
            begin_shutdown()  # running tasks stop at their next instance, recorded PENDING
            for thread in pool:
                thread.join(timeout=defaults.LOCAL_WORKER_STOP_GRACE)
            sweeper.stop()

    def _reset_holds(self) -> None:
        """Holds in the past are no holds; nothing to do for the rest."""
        with self.database.session() as session:
            session.execute(
                update(Task)
                .where(Task.not_before < utcnow())
                .values(not_before=None)
                .execution_options(synchronize_session=False)
            )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the detached worker process."""
    from ..config import get_settings
    from ..store import open_database

    parser = argparse.ArgumentParser(prog="adit_workbench.jobs.serve")
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    database = open_database(settings)
    worker = LocalWorker(database, settings, args.root)
    worker._beat()
    log.warning("local worker %d started for %s", os.getpid(), database.url_for_display)
    worker.run()
    log.warning("local worker %d stopped", os.getpid())


if __name__ == "__main__":
    main()
