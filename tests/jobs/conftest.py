"""Fixtures for the jobs tests: a migrated database (SQLite and PostgreSQL), users with the
job permissions, a seeded sandbox PACS, and both queue backends behind one interface."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adit_workbench.access import Access, Identity, IdentitySource, Permission, sign_in
from adit_workbench.config import Settings, get_settings
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.jobs import JobManager, defaults, execute, worker
from adit_workbench.jobs.queue import InlineBackend, RQBackend, queue_names
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store

PATIENTS = 3  # x 2 studies (CT, MR) x 2 series x 3 instances
_prefixes = itertools.count(1)

JOB_PERMISSIONS = (
    Permission.SELECTIVE_TRANSFER,
    Permission.BATCH_QUERY,
    Permission.BATCH_TRANSFER,
    Permission.MASS_TRANSFER,
)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPacs]:
    """A seeded sandbox PACS (module scope: tests only read from it)."""
    root = tmp_path_factory.mktemp("jobs-sandbox")
    with SandboxPacs(root, ae_title="SANDBOX") as server:
        server.seed(PATIENTS, seed=0)
        yield server


@pytest.fixture
def job_settings(
    database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings naming the test database, so that an RQ worker in this process finds it."""
    monkeypatch.setenv("ADIT_WB_DATABASE_URL", database_url)
    get_settings.cache_clear()
    worker._database.cache_clear()
    yield get_settings()
    worker._database.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def database(
    job_settings: Settings, database_url: str, pacs: SandboxPacs, tmp_path: Path
) -> Iterator[Database]:
    """At head, with nodes SANDBOX (the PACS), OUT (a folder) and OTHER (no access)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "other").mkdir()
    db = Database(database_url)
    db.upgrade()
    with db.session() as session:
        node_store.add_server(
            session,
            ServerSpec(
                "SANDBOX",
                "SANDBOX",
                "127.0.0.1",
                pacs.port,
                capabilities=Capabilities(
                    patient_root_find=True,
                    study_root_find=True,
                    study_root_get=True,
                    patient_root_get=True,
                    store=True,
                ),
            ),
        )
        node_store.add_folder(session, FolderSpec("OUT", tmp_path / "out"))
        node_store.add_folder(session, FolderSpec("OTHER", tmp_path / "other"))
    yield db
    db.dispose()


@pytest.fixture
def admin(database: Database) -> Access:
    """The local admin (first local user of a shared database)."""
    return sign_in(database, Identity("boss", IdentitySource.SERVICE), embedded=False)


@pytest.fixture
def make_user(database: Database, admin: Access) -> Callable[..., Access]:
    """A hub user in a group with the given permissions, SANDBOX as source, OUT as dest."""
    groups = itertools.count(1)

    def make(name: str, *permissions: Permission | str) -> Access:
        group = f"g{next(groups)}-{name}"
        identity = Identity(name, IdentitySource.JUPYTERHUB, groups=(group,))
        access = sign_in(database, identity, embedded=False)
        admin.admin.grant(group, "SANDBOX", source=True)
        admin.admin.grant(group, "OUT", destination=True)
        for permission in permissions:
            admin.admin.add_permission(group, permission)
        return access

    return make


@pytest.fixture
def alice(make_user: Callable[..., Access]) -> Access:
    """A researcher with every job permission (no staff, no urgent, pseudonymized only)."""
    return make_user("alice", *JOB_PERMISSIONS)


@dataclass
class Harness:
    """One queue backend under test: make managers, then ``drain()`` to run what is queued."""

    kind: str
    database: Database
    settings: Settings
    backend: Any
    redis_url: str | None = None
    prefix: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def manager(self, access: Access) -> JobManager:
        return JobManager(self.database, access, self.settings, self.backend)

    def drain(self, timeout: float = 60) -> None:
        """Run queued tasks until none is left (RQ: a SimpleWorker in burst mode)."""
        if self.kind == "inline":
            assert self.backend.join(timeout), "inline runner did not go idle"
            return
        from rq import Queue, SimpleWorker

        queues = [Queue(n, connection=self.backend.connection) for n in queue_names(self.prefix)]
        SimpleWorker(queues, connection=self.backend.connection).work(
            burst=True, logging_level="WARNING"
        )


@pytest.fixture(params=["inline", "rq"])
def harness(
    request: pytest.FixtureRequest, database: Database, job_settings: Settings
) -> Iterator[Harness]:
    """Both backends with the same tests."""
    if request.param == "inline":
        backend: Any = InlineBackend(database, job_settings, workers=1)
        yield Harness("inline", database, job_settings, backend)
        backend.close()
        return
    redis_url = request.getfixturevalue("redis_url")
    prefix = f"t{os.getpid()}-{next(_prefixes)}"
    backend = RQBackend(redis_url, prefix=prefix)
    yield Harness("rq", database, job_settings, backend, redis_url, prefix)
    backend.close()


@dataclass
class FakeResult:
    """What the stand-in transfer returns (the shape of transfer.TransferResult)."""

    expected: int = 1
    delivered: int = 1
    status: str = "SUCCESS"
    message: str = ""


class FakeTransfer:
    """QUEUE-MECHANICS TESTS ONLY: a stand-in for transfer_study that records its calls.

    ``block`` makes each call wait (honouring cancel) until released; ``fail`` maps a
    study UID to an exception to raise.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...] | None, str | None]] = []
        self.lock = threading.Lock()
        self.block = threading.Event()
        self.block.set()
        self.started = threading.Event()
        self.fail: dict[str, Exception] = {}

    def __call__(
        self,
        source: Any,
        destination: Any,
        study_uid: str,
        series: Any = None,
        *,
        pseudonymizer: Any = None,
        progress: Any = None,
        cancel: Any = None,
        **_: Any,
    ) -> FakeResult:
        self.started.set()
        while not self.block.wait(0.02):
            if cancel is not None and cancel.is_set():
                return FakeResult(status="FAILURE", message="canceled", delivered=0)
        if study_uid in self.fail:
            raise self.fail[study_uid]
        pseudonym = pseudonymizer.profile.pseudonym if pseudonymizer is not None else None
        with self.lock:
            self.calls.append((study_uid, tuple(series) if series else None, pseudonym))
        if progress is not None:
            progress(1, 1)
        return FakeResult()


@pytest.fixture
def fake_transfer(monkeypatch: pytest.MonkeyPatch) -> FakeTransfer:
    """Swap the transfer adapter's target (queue-mechanics tests only)."""
    fake = FakeTransfer()
    monkeypatch.setattr(execute, "TRANSFER", fake)
    # Made-up study UIDs: the source is not asked whether it holds them.
    monkeypatch.setattr(defaults, "CHECK_STUDIES_AT_SUBMIT", False)
    return fake
