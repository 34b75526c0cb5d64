"""``adit-workbench db``: the schema revision of the database, upgrading it, and granting
the service's database role (see :mod:`adit_workbench.store.roles`).

The embedded SQLite file is upgraded whenever the workbench opens it; a shared
PostgreSQL database is upgraded only here, by its admin, so that a new version of the
package never changes a schema others are using behind their back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import app
from ._common import service_host_only

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
@service_host_only
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
@service_host_only
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


@db_group.command("grant-service-role")
@click.argument("role")
@service_host_only
def grant_service_role_cmd(role: str) -> None:
    """Give ROLE the workbench service's privileges on a shared PostgreSQL database.

    Run as the role that owns the tables (the one that runs `db upgrade`), after each
    upgrade. ROLE gets SELECT/INSERT/UPDATE/DELETE on the application tables and only
    SELECT/INSERT on the audit log; as it owns nothing it cannot disable the audit
    triggers. Put ROLE's credentials (not the owner's) in the service's and the
    workers' ADIT_WB_DATABASE_URL.
    """
    from ..store.roles import grant_service_role

    database = _database()
    try:
        grants = grant_service_role(database, role)
    finally:
        database.dispose()
    click.echo(
        f"{database.url_for_display}: {grants.role} may read and write "
        f"{len(grants.tables) - 2} tables of schema {grants.schema}, only insert into "
        f"{grants.audit_table}, and owns none (owner: {grants.owner})"
    )
