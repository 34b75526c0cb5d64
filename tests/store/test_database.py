"""Database: migrations, sessions, SQLite settings, error wrapping, open_database."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from adit_workbench.config import Settings
from adit_workbench.errors import ConfigurationError, InputError, StoreError
from adit_workbench.store import Database, open_database
from adit_workbench.store.database import UPGRADE_HINT
from adit_workbench.store.models import DicomServer
from tests.servers._util import free_port

TABLES = {"node", "dicom_server", "dicom_folder", "alembic_version"}


def test_upgrade_from_empty(empty_database: Database) -> None:
    assert empty_database.current_revision() is None
    assert empty_database.needs_upgrade()
    new = empty_database.upgrade()
    assert new == empty_database.head_revision() == empty_database.current_revision()
    assert set(inspect(empty_database.engine).get_table_names()) >= TABLES
    assert not empty_database.needs_upgrade()


def test_upgrade_is_idempotent(database: Database) -> None:
    head = database.current_revision()
    assert database.upgrade() == head
    assert database.upgrade() == head
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_downgrade_to_base_and_back(database: Database) -> None:
    from alembic import command

    config = database.alembic_config()
    with database.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert database.current_revision() is None
    assert "node" not in inspect(database.engine).get_table_names()
    database.upgrade()
    assert not database.needs_upgrade()


def test_session_commits_and_rolls_back(database: Database) -> None:
    with database.session() as session:
        session.add(DicomServer(name="A", ae_title="A", host="h", port=104))
    with pytest.raises(InputError), database.session() as session:
        session.add(DicomServer(name="B", ae_title="B", host="h", port=104))
        session.flush()
        raise InputError("stop")  # the package's own errors pass through unwrapped
    with database.session() as session:
        names = session.scalars(text("SELECT name FROM node ORDER BY name")).all()
    assert names == ["A"]


def test_session_wraps_database_errors(database: Database) -> None:
    with (
        pytest.raises(StoreError, match=r"database operation on .* failed"),
        database.session() as s,
    ):
        s.add(DicomServer(name="P", ae_title="P", host="h", port=0))  # violates the check


def test_unreachable_postgres_error_hides_password() -> None:
    port = free_port()  # nothing listens there
    db = Database(f"postgresql+psycopg://user:s3cr3t-pw@127.0.0.1:{port}/db?connect_timeout=2")
    assert "s3cr3t-pw" not in repr(db)
    with pytest.raises(StoreError) as info:
        db.current_revision()
    assert "s3cr3t-pw" not in str(info.value)
    assert "***" in str(info.value) and str(port) in str(info.value)
    with pytest.raises(StoreError) as info, db.session() as session:
        session.execute(text("SELECT 1"))
    assert "s3cr3t-pw" not in str(info.value)


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://x/y"])
def test_bad_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Database(url)


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    db.dispose()


def test_sqlite_concurrent_upgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    errors: list[BaseException] = []

    def run() -> None:
        db = Database(url)
        try:
            db.upgrade()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = Database(url)
    assert not db.needs_upgrade()
    db.dispose()


def test_open_database_upgrades_embedded(settings: Settings) -> None:
    assert settings.is_embedded_database
    db = open_database(settings)
    try:
        assert not db.needs_upgrade()
        assert (settings.data_dir / "workbench.sqlite3").exists()
    finally:
        db.dispose()


def test_open_database_refuses_stale_shared_database(database_url: str, settings: Settings) -> None:
    shared = Settings(data_dir=settings.data_dir, database_url=database_url)
    assert not shared.is_embedded_database
    with pytest.raises(StoreError) as info:
        open_database(shared)
    assert UPGRADE_HINT in str(info.value)
    assert "wb-test-pw" not in str(info.value)
    db = open_database(shared, upgrade=True)
    db.dispose()
    db = open_database(shared)  # now current: opens without upgrading
    assert not db.needs_upgrade()
    db.dispose()


def test_open_database_refuses_newer_schema(database: Database, database_url: str) -> None:
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zzzz_future'"))
    with pytest.raises(StoreError, match="does not know"):
        open_database(Settings(database_url=database_url), upgrade=True)


def test_forked_child_gets_its_own_connections(database: Database) -> None:
    """RQ forks a work-horse per job: parent and child must not share pooled sockets."""
    postgres = database.engine.dialect.name == "postgresql"
    who = text("SELECT pg_backend_pid()" if postgres else "SELECT count(*) FROM node")
    with database.session() as session:
        session.add(DicomServer(name="A", ae_title="A", host="h", port=104))
    with database.session() as session:
        parent_backend = session.scalar(who)  # this connection now sits in the pool
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            with database.session() as session:
                code = 0 if session.scalar(text("SELECT count(*) FROM node")) == 1 else 2
                if postgres and session.scalar(who) == parent_backend:
                    code = 3  # reused the parent's socket
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with database.session() as session:  # the parent's pooled connection still works
        assert session.scalar(who) == parent_backend


def test_database_as_context_manager(database_url: str) -> None:
    with Database(database_url) as db:
        assert db.current_revision() is None
        assert "Database(" in repr(db)


def test_plain_postgresql_url_uses_psycopg3() -> None:
    db = Database("postgresql://u:pw@127.0.0.1:5/db")
    assert db.engine.dialect.driver == "psycopg"
    assert db.url_for_display == "postgresql+psycopg://u:***@127.0.0.1:5/db"
