"""``adit-workbench db grant-service-role``: the audit log is insert-only for the service's
database role (real PostgreSQL; the owner runs migrations, the service role only uses)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.cli import main
from adit_workbench.config import get_settings
from adit_workbench.store import Database

ON_POSTGRES = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
_roles = itertools.count(1)


def _psql(url: str) -> psycopg.Connection:
    u = make_url(url)
    return psycopg.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database,
        autocommit=True,
    )  # fmt: skip


@pytest.fixture
def owner_url(database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The owner's URL in the CLI's settings, the schema migrated by the owner."""
    monkeypatch.setenv("ADIT_WB_DATABASE_URL", database_url)
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    return database_url


@pytest.fixture
def service_role(owner_url: str) -> Iterator[tuple[str, str]]:
    """A fresh login role (name, URL) with no privileges yet."""
    role = f"wb_service_{os.getpid()}_{next(_roles)}"
    with _psql(owner_url) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'svc-pw'")
    url = make_url(owner_url).set(username=role, password="svc-pw")
    yield role, url.render_as_string(hide_password=False)
    with _psql(owner_url) as conn:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


@ON_POSTGRES
def test_service_role_may_only_insert_into_the_audit_log(
    service_role: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    role, url = service_role
    assert main(["db", "grant-service-role", role]) == 0
    out = capsys.readouterr().out
    assert f"{role} may read and write" in out and "only insert into audit_event" in out
    assert "svc-pw" not in out and "wb-test-pw" not in out

    # The application works as the service role: sign-in writes users, groups, audit rows.
    database = Database(url)
    try:
        ops = sign_in(database, Identity("ops", IdentitySource.SERVICE), embedded=False)
        ops.admin.add_permission("radiology", "explorer")
        ops.audit("test.inserted", details={"by": "service role"})
    finally:
        database.dispose()

    with _psql(url) as conn:
        count = conn.execute("SELECT count(*) FROM audit_event").fetchone()
        assert count is not None and count[0] >= 2
        for attack in (
            "UPDATE audit_event SET action = 'forged'",
            "DELETE FROM audit_event",
            "TRUNCATE audit_event",
            "ALTER TABLE audit_event DISABLE TRIGGER ALL",
            "ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only",
            "DROP TRIGGER audit_event_append_only ON audit_event",
            "ALTER TABLE audit_event OWNER TO CURRENT_USER",
            "CREATE TABLE sneaky (id int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attack)
        after = conn.execute("SELECT count(*) FROM audit_event").fetchone()
        assert after == count
        forged = conn.execute("SELECT count(*) FROM audit_event WHERE action = 'forged'")
        assert forged.fetchone() == (0,)
        # Everything else the application needs stays possible.
        conn.execute("UPDATE app_user SET last_seen_at = now() WHERE name = 'ops'")
        conn.execute("DELETE FROM site_settings WHERE false")


@ON_POSTGRES
def test_roles_that_could_lift_the_restriction_are_refused(
    owner_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = make_url(owner_url).username
    assert main(["db", "grant-service-role", str(owner)]) == 2
    assert "superuser" in capsys.readouterr().err
    assert main(["db", "grant-service-role", "no_such_role"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["db", "grant-service-role", "x; DROP TABLE job"]) == 2
    assert "letters, digits and _ only" in capsys.readouterr().err
    member = f"wb_member_{os.getpid()}_{next(_roles)}"
    with _psql(owner_url) as conn:
        conn.execute(f"CREATE ROLE {member} LOGIN SUPERUSER")
        conn.execute(f"ALTER ROLE {member} NOSUPERUSER")
        conn.execute(f"GRANT {owner} TO {member}")
    try:
        assert main(["db", "grant-service-role", member]) == 2
        assert "acts as their owner" in capsys.readouterr().err
    finally:
        with _psql(owner_url) as conn:
            conn.execute(f"DROP ROLE {member}")


def test_sqlite_has_no_roles(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    get_settings.cache_clear()
    assert main(["db", "grant-service-role", "svc"]) == 2
    assert "SQLite database has one user" in capsys.readouterr().err
