"""Engine, sessions and schema migrations for one database (SQLite or PostgreSQL).

Migrations are packaged with the code (``store/migrations``) and run through Alembic's
API with a configuration built here, so no ``alembic.ini`` is needed at run time.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..errors import ConfigurationError, StoreError, WorkbenchError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS_DIR", "Database", "open_database"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

#: How long a SQLite writer waits for another one before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Key of the PostgreSQL advisory lock that serialises concurrent ``upgrade()`` calls.
_UPGRADE_LOCK_KEY = 0x41_44_49_54  # "ADIT"

UPGRADE_HINT = "run `adit-workbench db upgrade`"

# Engines of this process. RQ's default worker forks per job: a child that used the
# parent's pooled connections would share their sockets and corrupt both sides, so each
# child forgets them (without closing what the parent still uses) and opens its own.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_pools_after_fork() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pools_after_fork)


class Database:
    """One database: an engine, a session factory and its migration state.

    Parameters
    ----------
    url:
        SQLAlchemy URL, e.g. ``sqlite:////path/wb.sqlite3`` or
        ``postgresql+psycopg://user:pw@host:5432/db``.
    echo:
        Log every statement (bound parameters stay hidden, they may hold secrets).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            self._url: URL = make_url(url)
        except ArgumentError as exc:
            raise ConfigurationError("invalid database URL (it could not be parsed)") from exc
        if self._url.drivername == "postgresql":
            # Plain postgresql:// means psycopg2 to SQLAlchemy, which we do not ship.
            self._url = self._url.set(drivername="postgresql+psycopg")
        self._secrets = [self._url.password] if self._url.password else []
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self._engine = create_engine(self._url, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise ConfigurationError(
                f"unsupported database URL {self.url_for_display}: {self._mask(str(exc))}"
            ) from exc
        if self.is_sqlite:
            _configure_sqlite(self._engine)
        _ENGINES.add(self._engine)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    # -- basics ------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (one connection pool per :class:`Database`)."""
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        """True for a SQLite database."""
        return self._url.get_backend_name() == "sqlite"

    @property
    def url_for_display(self) -> str:
        """The URL with its password masked: safe for messages and logs."""
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.url_for_display!r})"

    def dispose(self) -> None:
        """Close every pooled connection (the database stays usable; it reconnects)."""
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        ``write=True`` is for a transaction that reads and then writes: on SQLite it takes
        the write lock first (``BEGIN IMMEDIATE``, waiting up to the busy timeout), since a
        read transaction that another connection wrote behind cannot be upgraded and fails
        at once with "database is locked", whatever the busy timeout.

        Database errors come out as :class:`~adit_workbench.errors.StoreError`; the
        package's own errors (e.g. an ``InputError`` raised inside) pass through unchanged.
        """
        if write and self.is_sqlite:
            session = self._sessions(bind=self._engine.execution_options(sqlite_begin="IMMEDIATE"))
        else:
            session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise self._wrap(exc, "database operation") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # -- migrations --------------------------------------------------------------------
    def alembic_config(self) -> Config:
        """An Alembic configuration for this database, built in code (no ini file)."""
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        # env.py reads the URL from the attributes: set_main_option would run it through
        # ConfigParser interpolation, which breaks on a '%' in a password.
        config.attributes["url"] = self._url
        return config

    def head_revision(self) -> str:
        """The newest revision the code knows."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        if head is None:  # pragma: no cover - the package always ships revisions
            raise StoreError("no migrations found in the package")
        return head

    def current_revision(self) -> str | None:
        """The revision the database is at, or ``None`` for an empty database."""
        from alembic.runtime.migration import MigrationContext

        try:
            with self._engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise self._wrap(exc, "reading the schema revision") from exc

    def needs_upgrade(self) -> bool:
        """True when the database is not at the code's head revision."""
        return self.current_revision() != self.head_revision()

    def is_known_revision(self, revision: str | None) -> bool:
        """False when ``revision`` comes from newer code than this (a downgrade of the app)."""
        if revision is None:
            return True
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self.alembic_config())
        try:
            return script.get_revision(revision) is not None
        except Exception:
            return False

    def upgrade(self, revision: str = "head") -> str | None:
        """Migrate the schema to ``revision`` (default the head); returns the new revision.

        Safe to call concurrently from several processes: the migration runs in one
        transaction that first takes a write lock (SQLite ``BEGIN IMMEDIATE``, a
        PostgreSQL advisory lock), so the second caller finds the work done.
        """
        from alembic import command

        config = self.alembic_config()
        try:
            with self._engine.connect() as conn:
                if self.is_sqlite:
                    conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK_KEY})")
                    config.attributes["connection"] = conn
                    command.upgrade(config, revision)
        except SQLAlchemyError as exc:
            raise self._wrap(exc, "upgrading the schema") from exc
        except WorkbenchError:
            raise
        except Exception as exc:  # alembic's CommandError, a broken migration
            raise StoreError(
                f"upgrading the schema of {self.url_for_display} failed: {self._mask(str(exc))}"
            ) from exc
        return self.current_revision()

    # -- errors ------------------------------------------------------------------------
    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _wrap(self, exc: SQLAlchemyError, action: str) -> StoreError:
        """A StoreError saying what failed and why, with no password and no SQL."""
        orig = getattr(exc, "orig", None)
        detail = str(orig if orig is not None else exc).strip().splitlines()
        reason = detail[0] if detail else type(exc).__name__
        # Connection errors can quote the DSN; SQLAlchemy's background links add noise.
        reason = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", reason)
        return StoreError(f"{action} on {self.url_for_display} failed: {self._mask(reason)}")


def _configure_sqlite(engine: Engine) -> None:
    """Per-connection SQLite settings, and transactions that really begin.

    pysqlite only emits BEGIN before DML, so DDL (migrations) would autocommit statement
    by statement; taking over BEGIN makes migrations atomic and lets ``upgrade()`` ask
    for ``BEGIN IMMEDIATE``.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            # WAL lets notebooks read while a worker writes; not possible in memory.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


_REVISION = re.compile(r"^revision(?::[^=]*)? = [\"'](\w+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision(?::[^=]*)? = (.+)$", re.MULTILINE)


def _declared_head() -> str | None:
    """The head revision as the packaged migration files declare it, or None in doubt.

    Read with two regular expressions instead of Alembic, whose import costs about a
    third of a short command's start (``bench/cli.py``); only a database already at
    this head skips Alembic, every other case goes through it.
    """
    revisions: set[str] = set()
    downs: set[str] = set()
    try:
        for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
            text = path.read_text(encoding="utf-8")
            revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
            if revision is None or down is None:
                return None
            revisions.add(revision.group(1))
            downs.update(re.findall(r"[\"'](\w+)[\"']", down.group(1)))
    except OSError:
        return None
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def _at_declared_head(database: Database) -> bool:
    """Whether the database is stamped with exactly the declared head (no Alembic)."""
    head = _declared_head()
    if head is None:
        return False
    try:
        with database.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return False
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    except SQLAlchemyError:
        return False  # the full check reports it properly
    return [row[0] for row in rows] == [head]


def open_database(settings: Settings, *, upgrade: bool | None = None) -> Database:
    """The database the settings name, checked to be at the code's schema revision.

    Parameters
    ----------
    settings:
        Where the database is (:attr:`Settings.effective_database_url`).
    upgrade:
        Migrate to the head revision first. ``None`` (default) upgrades the embedded
        SQLite file automatically and leaves a shared (configured) database to its admin.

    Raises
    ------
    StoreError
        The database is behind and not upgraded here (the message says to run
        ``adit-workbench db upgrade``), or it is ahead of this code, or unreachable.
    """
    if settings.is_embedded_database:
        settings.ensure_data_dir()
    database = Database(settings.effective_database_url)
    if upgrade is None:
        upgrade = settings.is_embedded_database
    if _at_declared_head(database):
        return database
    try:
        current = database.current_revision()
        if not database.is_known_revision(current):
            raise StoreError(
                f"database {database.url_for_display} is at revision {current}, which this "
                "version of adit-workbench does not know: upgrade adit-workbench"
            )
        head = database.head_revision()
        if current != head:
            if not upgrade:
                raise StoreError(
                    f"database {database.url_for_display} is at revision {current or '(empty)'} "
                    f"but this version needs {head}: {UPGRADE_HINT}"
                )
            database.upgrade()
    except BaseException:
        database.dispose()
        raise
    return database
