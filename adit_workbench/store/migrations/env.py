"""Alembic environment: run by ``Database.upgrade()`` (and by ``alembic`` if ever needed).

The caller passes either an open ``connection`` (preferred: the caller holds the
transaction and its lock) or a ``url`` through ``config.attributes``; nothing is read from
the environment or an ini file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import URL, Connection, create_engine, pool

from adit_workbench.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _url() -> str | URL:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database: pass config.attributes['connection'] or ['url']")
    return url


def run_migrations_offline() -> None:
    """Emit SQL for an admin to review (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
