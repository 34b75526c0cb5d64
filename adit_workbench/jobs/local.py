"""The local worker: one detached process per data directory that runs job tasks.

Without Redis, tasks used to run in threads of the notebook kernel, so a kernel crash,
restart or Ctrl-C stopped, failed or orphaned them. Now the first job submitted starts
``python -m adit_workbench.jobs.serve`` in a session of its own (like the sandbox PACS,
:mod:`adit_workbench.sandbox.process`): the kernel's interrupts and death do not reach
it. It takes PENDING tasks from the database (no queue process needed), writes a
heartbeat file, and exits on its own after a while without work.

Everything lives in ``settings.data_dir / "worker"``: ``worker.pid``, ``worker.log``,
``state.json`` (pid, database, last beat) and ``.lock`` (serialises start, stop and the
worker's idle exit, so that a task submitted while the worker exits is never stranded).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from ..errors import ConfigurationError
from ..locks import folder_lock
from ..store.jobs import Task
from ..store.models import utcnow
from . import defaults

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database

__all__ = [
    "LocalWorkerBackend",
    "WorkerStatus",
    "start_worker",
    "stop_worker",
    "worker_status",
]

STOP_TIMEOUT = 30.0
_MODULE = b"adit_workbench.jobs.serve"
# Children started by this process: their pids stay "alive" as zombies until reaped.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class WorkerStatus:
    """What is known about the local worker of a data directory.

    Attributes:
        pid: Its process id, or None when it is not running.
        running: Whether the process is alive.
        beat_age: Seconds since its last heartbeat (None: it never beat).
        database: The database it serves (password masked).
        root: Folder of its pid, state and log files.
    """

    pid: int | None
    running: bool
    beat_age: float | None
    database: str
    root: Path

    @property
    def alive(self) -> bool:
        """Running and beating (a hung worker stops beating)."""
        return self.running and (
            self.beat_age is None or self.beat_age < defaults.LOCAL_WORKER_STALE_AFTER
        )


def worker_dir(settings: Settings) -> Path:
    """Where the local worker of ``settings.data_dir`` keeps its files."""
    return settings.data_dir / "worker"


def read_state(root: Path) -> dict[str, Any]:
    """The worker's state file (empty when missing or unreadable)."""
    try:
        data = json.loads((root / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(root: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically (a kernel may be reading it)."""
    tmp = root / f".state.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, root / "state.json")


def pid_alive(pid: int, marker: bytes | None = _MODULE) -> bool:
    """Whether ``pid`` is a live (non-zombie) process, running ``marker`` if given."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process reusing the pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (not Linux): trust the signal probe
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return marker is None or marker in cmdline


def _read_pid(root: Path) -> int | None:
    try:
        return int((root / "worker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def log_tail(root: Path, chars: int = 1500) -> str:
    """The end of the worker's log (for error messages: no patient data is logged)."""
    try:
        return (root / "worker.log").read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def worker_status(settings: Settings) -> WorkerStatus:
    """The local worker's state as of now."""
    root = worker_dir(settings)
    state = read_state(root)
    pid = _read_pid(root)
    running = pid is not None and pid_alive(pid)
    beat = state.get("beat") if state.get("pid") == pid else None
    age = max(0.0, time.time() - float(beat)) if isinstance(beat, (int, float)) else None
    return WorkerStatus(
        pid=pid if running else None,
        running=running,
        beat_age=age,
        database=str(state.get("database", "")),
        root=root,
    )


def _display_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.effective_database_url).render_as_string(hide_password=True)


def start_worker(settings: Settings) -> WorkerStatus:
    """Start the local worker of ``settings.data_dir`` unless it runs; returns its status.

    Does not wait for the worker to be ready: it picks up what is PENDING when it is.

    Raises:
        ConfigurationError: A worker for another database runs in this data directory.
    """
    root = worker_dir(settings)
    wanted = _display_url(settings)
    with folder_lock(root):
        current = worker_status(settings)
        if current.running:
            if current.database and current.database != wanted:
                raise ConfigurationError(
                    f"the local worker in {root} serves {current.database}, not {wanted}; "
                    "stop it with `adit-workbench worker stop` or use another ADIT_WB_DATA_DIR"
                )
            return current
        env = {**os.environ, "ADIT_WB_DATA_DIR": str(settings.data_dir)}
        env.pop("ADIT_WB_REDIS_URL", None)  # this worker takes its tasks from the database
        if settings.database_url is not None:
            env["ADIT_WB_DATABASE_URL"] = settings.database_url.get_secret_value()
        else:
            env.pop("ADIT_WB_DATABASE_URL", None)
        if settings.secret_file is not None:
            env["ADIT_WB_SECRET_FILE"] = str(settings.secret_file)
        cmd = [sys.executable, "-m", "adit_workbench.jobs.serve", "--root", str(root)]
        with open(root / "worker.log", "ab") as log_fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                # Its own session: a kernel's interrupt (sent to the kernel's process
                # group) or death does not reach the worker or its transfer processes.
                start_new_session=True,
                env=env,
                cwd=str(root),
            )
        _children[proc.pid] = proc
        (root / "worker.pid").write_text(f"{proc.pid}\n")
        write_state(root, {"pid": proc.pid, "database": wanted, "started": time.time()})
    return worker_status(settings)


def stop_worker(settings: Settings, *, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the local worker; its unfinished tasks stay PENDING. False if none ran."""
    root = worker_dir(settings)
    if not root.exists():
        return False
    with folder_lock(root):
        pid = _read_pid(root)
        running = pid is not None and pid_alive(pid)
        if pid is not None and running:
            _terminate(pid, timeout)
        (root / "worker.pid").unlink(missing_ok=True)
        return running


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # it puts its running tasks back to PENDING
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    # The whole session: transfer processes a hung worker leaves behind go with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)


def hold_until(database: Database, task_id: int, delay: float) -> None:
    """Keep a PENDING task from being taken for ``delay`` seconds (retries, windows)."""
    with database.session() as session:
        session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(not_before=utcnow() + timedelta(seconds=delay))
            .execution_options(synchronize_session=False)
        )


class LocalWorkerBackend:
    """The queue backend of a notebook or CLI without Redis: the local worker process.

    The queue is the database itself (PENDING tasks); queueing only makes sure the
    worker of this data directory runs.
    """

    name = "local"

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self._checked = 0.0

    def __repr__(self) -> str:
        return f"<LocalWorkerBackend {worker_dir(self.settings)}>"

    def enqueue(self, task_id: int, *, priority: int, timeout: int, delay: float = 0) -> None:
        """Make sure the worker runs (``delay``: the task waits that long first)."""
        if delay > 0:
            hold_until(self.database, task_id, delay)
        self.ensure()

    def enqueue_many(self, task_ids: list[int], *, priority: int, timeout: int) -> None:
        """Many tasks: one check that the worker runs."""
        self.ensure()

    def ensure(self) -> WorkerStatus:
        """Start the worker if it is not running (checked at most once a second)."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return worker_status(self.settings)
        self._checked = now
        return start_worker(self.settings)

    def alive(self) -> bool:
        """Whether a worker runs and beats for this data directory."""
        return worker_status(self.settings).alive

    def describe_dead(self) -> str:
        """Why no worker runs, for an error message."""
        status = worker_status(self.settings)
        tail = log_tail(status.root)
        where = f"see {status.root / 'worker.log'}"
        return f"the local worker is not running ({where})" + (f":\n{tail}" if tail else "")

    def close(self) -> None:
        """Nothing to release: the worker outlives this process on purpose."""
