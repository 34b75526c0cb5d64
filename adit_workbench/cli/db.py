"""``adit-workbench db``: the schema revision of the database, and upgrading it.

The embedded SQLite file is upgraded whenever the workbench opens it; a shared
PostgreSQL database is upgraded only here, by its admin, so that a new version of the
package never changes a schema others are using behind their back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import app

if TYPE_CHECKING:
    from ..store import Database


def _database() -> Database:
    from ..config import get_settings
    from ..store import Database

    settings = get_settings()
    if settings.is_embedded_database:
        settings.ensure_data_dir()
    return Database(settings.effective_database_url)


@app.group("db")
def db_group() -> None:
    """Show or upgrade the database schema (ADIT_WB_DATABASE_URL)."""


@db_group.command("upgrade")
def upgrade() -> None:
    """Migrate the database to the schema this version needs."""
    database = _database()
    try:
        before = database.current_revision()
        after = database.upgrade()
    finally:
        database.dispose()
    where = database.url_for_display
    if before == after:
        click.echo(f"{where}: already at {after} (head)")
    else:
        click.echo(f"{where}: upgraded {before or '(empty)'} -> {after}")


@db_group.command("current")
def current() -> None:
    """Print the database's schema revision and whether it needs an upgrade."""
    database = _database()
    try:
        revision = database.current_revision()
        head = database.head_revision()
        known = database.is_known_revision(revision)
    finally:
        database.dispose()
    where = database.url_for_display
    if revision == head:
        click.echo(f"{where}: {revision} (head)")
    elif not known:
        click.echo(f"{where}: {revision} (newer than this adit-workbench; head is {head})")
    else:
        click.echo(
            f"{where}: {revision or '(empty)'} (head is {head}: run `adit-workbench db upgrade`)"
        )
