"""Real RQ worker processes against one Redis and one database (SQLite and PostgreSQL):
three workers never run one task twice, and a worker SIGKILLed in the middle of a study is
recovered by another worker's sweeper with every instance delivered exactly once."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from adit_workbench.access import Access
from adit_workbench.config import Settings
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.jobs import JobManager, JobStatus, defaults
from adit_workbench.jobs.kinds import selective_transfer
from adit_workbench.jobs.queue import RQBackend, queue_names
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.jobs import Task

_prefixes = itertools.count(1)

#: Starts a worker with short heartbeat/sweep intervals (the production ones are seconds
#: to a minute); everything else is the real `adit-workbench worker` code path.
WORKER = """
import sys
from adit_workbench.jobs import defaults
defaults.HEARTBEAT_INTERVAL = 0.3
if len(sys.argv) > 4:
    from adit_workbench.store import database
    database.SQLITE_BUSY_TIMEOUT_MS = int(sys.argv[4])
from adit_workbench.jobs.worker import run_worker
run_worker(sys.argv[1], prefix=sys.argv[2], burst=sys.argv[3] == "burst",
           sweep_interval=0.5, stale_after=4.0)
"""


def _dicom_files(root: Path) -> dict[str, tuple[int, int]]:
    """Delivered files (not staging) → (inode, mtime): a re-write changes both."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.endswith(".dcm") and not name.startswith("."):
                stat = os.stat(os.path.join(dirpath, name))
                found[os.path.join(dirpath, name)] = (stat.st_ino, stat.st_mtime_ns)
    return found


@pytest.fixture
def rq_env(
    job_settings: Settings, database_url: str, redis_url: str, data_dir: Path
) -> Iterator[tuple[dict[str, str], str, RQBackend]]:
    prefix = f"w{os.getpid()}-{next(_prefixes)}"
    env = {**os.environ, "ADIT_WB_DATABASE_URL": database_url, "ADIT_WB_REDIS_URL": redis_url,
           "ADIT_WB_DATA_DIR": str(data_dir)}  # fmt: skip
    backend = RQBackend(redis_url, prefix=prefix)
    yield env, prefix, backend
    backend.close()


def _start(
    env: dict[str, str], redis_url: str, prefix: str, mode: str, *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, redis_url, prefix, mode, *extra],
        env=env,
        start_new_session=True,  # its own process group: SIGKILL reaches the work-horse too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=30)


def _tasks(database: Database, job_id: int) -> list[Task]:
    with database.session() as session:
        return list(session.scalars(select(Task).where(Task.job_id == job_id)))


def test_three_workers_never_run_a_task_twice(
    rq_env: tuple[dict[str, str], str, RQBackend],
    database: Database,
    job_settings: Settings,
    alice: Access,
    tmp_path: Path,
) -> None:
    env, prefix, backend = rq_env
    jobs = JobManager(database, alice, job_settings, backend)
    from adit_workbench.dicom.node import open_node
    from adit_workbench.dicom.query import find_studies

    with database.session() as session:
        spec = node_store.get_node(session, "SANDBOX")
    node = open_node(spec, job_settings)
    studies = list(find_studies(node))
    node.close()
    assert len(studies) == 6
    job = selective_transfer(jobs, studies, source="SANDBOX", destination="OUT", pseudonym="S")
    for task in _tasks(database, job.id):  # duplicate entries: only the claim decides
        for _ in range(2):
            backend.enqueue(task.id, priority=4, timeout=600)
    redis_url = env["ADIT_WB_REDIS_URL"]
    workers = [_start(env, redis_url, prefix, "burst") for _ in range(3)]
    for proc in workers:
        assert proc.wait(timeout=180) == 0, proc.stderr.read() if proc.stderr else ""
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    tasks = _tasks(database, job.id)
    assert [t.attempts for t in tasks] == [1] * 6
    assert len(_dicom_files(tmp_path / "out")) == 36
    assert all(len(Queue(n, connection=backend.connection)) == 0 for n in queue_names(prefix))


@pytest.fixture
def big_pacs(tmp_path: Path) -> Iterator[SandboxPacs]:
    """One study of 2 x 80 instances: long enough to be killed in the middle."""
    with SandboxPacs(tmp_path / "big", ae_title="BIG") as server:
        server.seed(1, seed=7, studies=1, series=2, instances=80, pid_prefix="BIG")
        yield server


def test_sigkilled_worker_is_recovered_and_each_instance_delivered_once(
    rq_env: tuple[dict[str, str], str, RQBackend],
    database: Database,
    job_settings: Settings,
    admin: Access,
    alice: Access,
    big_pacs: SandboxPacs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env, prefix, backend = rq_env
    # The transfer outruns the kill otherwise: the PACS (in this process) sends at most
    # one instance per 5 ms, so the kill lands half-way.
    real_send = big_pacs._send

    def slow_send(event: Any, instances: Any) -> Iterator[Any]:
        for item in real_send(event, instances):
            time.sleep(0.005)
            yield item

    monkeypatch.setattr(big_pacs, "_send", slow_send)
    with database.session() as session:
        caps = Capabilities(study_root_find=True, study_root_get=True, patient_root_find=True)
        node_store.add_server(session, ServerSpec("BIG", "BIG", "127.0.0.1", big_pacs.port,
                                                  capabilities=caps))  # fmt: skip
    admin.admin.grant(alice.profile().groups[0], "BIG", source=True)
    from adit_workbench.dicom.node import open_node
    from adit_workbench.dicom.query import find_studies

    with database.session() as session:
        spec = node_store.get_node(session, "BIG")
    node = open_node(spec, job_settings)
    [study] = list(find_studies(node))
    node.close()
    jobs = JobManager(database, alice, job_settings, backend)
    job = selective_transfer(jobs, [study], source="BIG", destination="OUT", pseudonym="K1")
    out = tmp_path / "out"
    redis_url = env["ADIT_WB_REDIS_URL"]

    first = _start(env, redis_url, prefix, "serve")
    deadline = time.monotonic() + 60
    while len(_dicom_files(out)) < 10:
        assert time.monotonic() < deadline, "the first worker delivered nothing"
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        time.sleep(0.01)
    # The machine dies: the work-horse (rq gives it a session of its own, with the
    # transfer's processes) and the worker, mid-study.
    [task] = _tasks(database, job.id)
    assert task.status == "IN_PROGRESS" and task.worker
    horse = int(task.worker.split(":")[1])
    os.killpg(os.getpgid(horse), signal.SIGKILL)
    _kill(first)
    time.sleep(0.2)
    before = _dicom_files(out)
    assert 10 <= len(before) < 160

    second = _start(env, redis_url, prefix, "serve")
    try:
        job.wait(90, progress=False)
    except TimeoutError as exc:
        _kill(second, signal.SIGTERM)
        log = second.stderr.read().decode() if second.stderr else ""
        raise AssertionError(f"{exc}\n{_tasks(database, job.id)[0].log}\n{log[-3000:]}") from exc
    finally:
        _kill(second, signal.SIGTERM)
    [task] = _tasks(database, job.id)
    assert job.status is JobStatus.SUCCESS, (task.message, task.log)
    after = _dicom_files(out)
    assert len(after) == 160
    rewritten = [p for p, identity in before.items() if after[p] != identity]
    assert rewritten == [], task.log  # delivered before the kill: never written again
    # Two attempts, or more if a loaded machine delayed a heartbeat past the stale limit.
    assert task.attempts >= 2 and "lost" in task.log, task.log


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # DB-agnostic path
def test_cancel_reaches_a_worker_on_another_process(
    rq_env: tuple[dict[str, str], str, RQBackend],
    database: Database,
    job_settings: Settings,
    admin: Access,
    alice: Access,
    big_pacs: SandboxPacs,
    tmp_path: Path,
) -> None:
    """The heartbeat carries the cancel: the task stops at its next instance; resume ends it."""
    env, prefix, backend = rq_env
    with database.session() as session:
        caps = Capabilities(study_root_find=True, study_root_get=True, patient_root_find=True)
        node_store.add_server(
            session, ServerSpec("BIG", "BIG", "127.0.0.1", big_pacs.port, capabilities=caps)
        )
    admin.admin.grant(alice.profile().groups[0], "BIG", source=True)
    from adit_workbench.dicom.node import open_node
    from adit_workbench.dicom.query import find_studies

    with database.session() as session:
        spec = node_store.get_node(session, "BIG")
    node = open_node(spec, job_settings)
    [study] = list(find_studies(node))
    node.close()
    jobs = JobManager(database, alice, job_settings, backend)
    job = selective_transfer(jobs, [study], source="BIG", destination="OUT", pseudonym="C1")
    out = tmp_path / "out"
    worker = _start(env, env["ADIT_WB_REDIS_URL"], prefix, "serve")
    try:
        deadline = time.monotonic() + 60
        while len(_dicom_files(out)) < 5:
            assert time.monotonic() < deadline, "the worker delivered nothing"
            time.sleep(0.01)
        job.cancel()
        job.wait(30, progress=False, raise_on_failure=False)
        assert job.status is JobStatus.CANCELED
        stopped = len(_dicom_files(out))
        assert stopped < 160
        assert job.resume() == 1
        assert job.wait(60, progress=False).status is JobStatus.SUCCESS
    finally:
        _kill(worker, signal.SIGTERM)
    assert len(_dicom_files(out)) == 160


def test_a_queue_entry_that_meets_a_locked_database_runs_when_it_is_free(
    rq_env: tuple[dict[str, str], str, RQBackend],
    database: Database,
    job_settings: Settings,
    alice: Access,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claiming fails while another process holds SQLite's write lock: the entry must
    come back (RQ's retry), not vanish and leave the task PENDING with nothing queued."""
    if not database.is_sqlite:
        pytest.skip("the fault is SQLite's write lock")
    env, prefix, backend = rq_env
    monkeypatch.setattr(defaults, "QUEUE_RETRY_INTERVALS", (1,))
    from adit_workbench.dicom.node import open_node
    from adit_workbench.dicom.query import find_studies

    with database.session() as session:
        node = open_node(node_store.get_node(session, "SANDBOX"), job_settings)
    study = next(iter(find_studies(node)))
    node.close()
    job = selective_transfer(
        JobManager(database, alice, job_settings, backend),
        [study], source="SANDBOX", destination="OUT", pseudonym="L",
    )  # fmt: skip
    blocker = sqlite3.connect(str(database.engine.url.database), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    worker = _start(env, env["ADIT_WB_REDIS_URL"], prefix, "serve", "200")
    try:
        scheduled = [
            ScheduledJobRegistry(queue=Queue(name, connection=backend.connection))
            for name in queue_names(prefix)
        ]
        deadline = time.monotonic() + 60
        while not any(registry.count for registry in scheduled):
            assert time.monotonic() < deadline, "the entry was not scheduled again"
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            time.sleep(0.1)
        assert _tasks(database, job.id)[0].status == "PENDING"
        blocker.execute("ROLLBACK")
        assert job.wait(60, progress=False).status is JobStatus.SUCCESS
    finally:
        blocker.close()
        _kill(worker, signal.SIGTERM)
    assert [t.attempts for t in _tasks(database, job.id)] == [1]
