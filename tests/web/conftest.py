"""Fixtures for the service tests: the real service (uvicorn in a thread, free port) over a
migrated database (SQLite and PostgreSQL) with a seeded sandbox PACS, users with tokens,
and the ``wb`` fixture that gives the same tests the local and the remote workbench."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from sqlalchemy import func, select, update

from adit_workbench.access import Access, Identity, IdentitySource, Permission, sign_in
from adit_workbench.config import Settings, get_settings
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.jobs import worker
from adit_workbench.remote import RemoteWorkbench
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.access import ApiToken, Group, User
from adit_workbench.store.jobs import Job, Task
from adit_workbench.store.models import Node, utcnow
from adit_workbench.web.app import create_app
from adit_workbench.workbench import Workbench
from tests.servers._util import free_port, wait_until

PATIENTS = 3  # x 2 studies (CT, MR) x 2 series x 3 instances
JOB_PERMISSIONS = (
    Permission.SELECTIVE_TRANSFER,
    Permission.BATCH_QUERY,
    Permission.BATCH_TRANSFER,
    Permission.MASS_TRANSFER,
)
_groups = itertools.count(1)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPacs]:
    """A seeded sandbox PACS (module scope: tests only read from it)."""
    root = tmp_path_factory.mktemp("web-sandbox")
    with SandboxPacs(root, ae_title="SANDBOX") as server:
        server.seed(PATIENTS, seed=0)
        yield server


@pytest.fixture
def service_settings(
    database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings of the service: SQLite runs on the embedded default (no database URL set),
    PostgreSQL through ADIT_WB_DATABASE_URL."""
    if not database_url.startswith("sqlite"):
        monkeypatch.setenv("ADIT_WB_DATABASE_URL", database_url)
    get_settings.cache_clear()
    worker._database.cache_clear()
    yield get_settings()
    worker._database.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def database(service_settings: Settings, pacs: SandboxPacs, tmp_path: Path) -> Iterator[Database]:
    """At head, with nodes SANDBOX (the PACS), OUT (a folder) and OTHER (no access)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "other").mkdir()
    service_settings.ensure_data_dir()
    db = Database(service_settings.effective_database_url)
    db.upgrade()
    caps = Capabilities(
        patient_root_find=True,
        study_root_find=True,
        study_root_get=True,
        patient_root_get=True,
        store=True,
    )
    with db.session() as session:
        node_store.add_server(
            session, ServerSpec("SANDBOX", "SANDBOX", "127.0.0.1", pacs.port, capabilities=caps)
        )
        node_store.add_folder(session, FolderSpec("OUT", tmp_path / "out"))
        node_store.add_folder(session, FolderSpec("OTHER", tmp_path / "other"))
    yield db
    db.dispose()


@dataclass
class Running:
    """A running service."""

    url: str
    settings: Settings
    database: Database
    server: uvicorn.Server
    thread: threading.Thread

    def session(self, token: str | None = None) -> requests.Session:
        """A requests session (with ``Authorization: Token …`` when a token is given)."""
        s = requests.Session()
        if token:
            s.headers["Authorization"] = f"Token {token}"
        return s


def start_service(
    settings: Settings, database: Database | None = None, *, port: int | None = None
) -> Running:
    """Start the service in a thread (on a free port unless given); stop it with
    :func:`stop_service`."""
    app = create_app(settings, database)
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="web-service", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, what="the workbench service to start")
    db = app.state.service.database
    return Running(f"http://127.0.0.1:{port}/", settings, db, server, thread)


def stop_service(running: Running) -> None:
    running.server.should_exit = True
    running.thread.join(20)


@pytest.fixture
def service(service_settings: Settings, database: Database) -> Iterator[Running]:
    """The real service over the test database (its own engine, as a separate process has)."""
    running = start_service(service_settings)
    yield running
    stop_service(running)


@dataclass
class People:
    """Users of the service, each with an Access (for the local workbench) and a token."""

    database: Database
    admin: Access
    tokens: dict[str, str] = field(default_factory=dict)
    access: dict[str, Access] = field(default_factory=dict)

    def token(self, name: str) -> str:
        return self.tokens[name]


@pytest.fixture
def people(database: Database) -> People:
    """boss (admin), alice (every job permission), nina (no job permission), olga (every
    job permission, no node), sam (staff); plus expired and revoked tokens of alice."""
    admin = sign_in(database, Identity("boss", IdentitySource.SERVICE), embedded=False)
    found = People(database, admin)
    found.access["boss"] = admin
    found.tokens["boss"] = admin.tokens.create(expires=30).token

    def make(name: str, *permissions: Permission, nodes: bool = True) -> None:
        group = f"g{next(_groups)}-{name}"
        identity = Identity(name, IdentitySource.JUPYTERHUB, groups=(group,))
        access = sign_in(database, identity, embedded=False)
        if nodes:
            admin.admin.grant(group, "SANDBOX", source=True)
            admin.admin.grant(group, "OUT", destination=True)
        for permission in (Permission.REST_API, *permissions):
            admin.admin.add_permission(group, permission)
        found.access[name] = access
        found.tokens[name] = access.tokens.create(expires=30).token

    make("alice", *JOB_PERMISSIONS)
    make("nina")
    make("olga", *JOB_PERMISSIONS, nodes=False)
    make("sam", *JOB_PERMISSIONS, Permission.STAFF)
    alice = found.access["alice"]
    expired = alice.tokens.create(expires=1)
    with database.session() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == expired.info.id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    found.tokens["expired"] = expired.token
    revoked = alice.tokens.create(expires=30)
    alice.tokens.revoke(revoked.info.id)
    found.tokens["revoked"] = revoked.token
    return found


@pytest.fixture(params=["local", "remote"])
def wb_for(
    request: pytest.FixtureRequest, service_settings: Settings, database: Database, people: People
) -> Iterator[Callable[[str], Any]]:
    """``wb_for(user)``: the local workbench, or the remote one through the real service."""
    opened: list[Any] = []
    running = request.getfixturevalue("service") if request.param == "remote" else None

    def make(user: str) -> Any:
        if running is None:
            wb: Any = Workbench(service_settings, database, people.access[user])
        else:
            wb = RemoteWorkbench(running.url, people.token(user))
        opened.append(wb)
        return wb

    yield make
    for wb in opened:
        wb.close()


@pytest.fixture
def wb(wb_for: Callable[[str], Any]) -> Any:
    """alice's workbench, local or remote."""
    return wb_for("alice")


def row_counts(database: Database) -> dict[str, int]:
    """Rows of every table a request could write (the audit log aside)."""
    with database.session() as session:
        return {
            model.__name__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Job, Task, Node, Group, User, ApiToken)
        }


def finished_job(database: Database, owner: str = "boss", kind: str = "batch_query") -> int:
    """A job row that has ended (SUCCESS, no tasks), for the permission matrix."""
    with database.session() as session:
        job = Job(kind=kind, owner=owner, status="SUCCESS", source="SANDBOX", message="done")
        session.add(job)
        session.flush()
        return int(job.id)


def finished_task(database: Database, owner: str = "boss") -> int:
    """A failed task of a failed batch query (nothing to run again: no rows), for the matrix."""
    with database.session() as session:
        job = Job(kind="batch_query", owner=owner, status="FAILURE", source="SANDBOX")
        job.tasks = [Task(source="SANDBOX", status="FAILURE", query={}, lines=[1])]
        session.add(job)
        session.flush()
        return int(job.tasks[0].id)


def dicom_bytes() -> bytes:
    """One synthetic PHI-rich instance as Part-10 bytes."""
    import io

    from adit_workbench.sandbox.synthetic import iter_datasets

    ds = next(iter_datasets(patients=1, series=1, instances=1, rows=8, cols=8))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
