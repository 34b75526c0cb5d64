"""Database roles on PostgreSQL: the owner runs migrations, the service role only uses.

The role that owns the tables can do anything to them, including
``ALTER TABLE audit_event DISABLE TRIGGER ALL`` followed by editing or deleting audit rows.
So a deployment has two roles: the *owner* (it runs ``adit-workbench db upgrade`` and
nothing else, its password kept by the admin) and the *service role* whose credentials
the workbench service and its workers hold. :func:`grant_service_role` gives the service
role what the application needs and no more:

* ``SELECT, INSERT, UPDATE, DELETE`` on every application table;
* only ``SELECT, INSERT`` on ``audit_event`` (the audit log is insert-only for it; the
  append-only triggers stay, and only the owner could disable them);
* ``SELECT`` on ``alembic_version``, ``USAGE, SELECT`` on the sequences, ``USAGE`` on the
  schema; no ``TRUNCATE``, ``REFERENCES``, ``TRIGGER`` or ``CREATE``.

It refuses a role that owns a table, is a superuser, or may act as the owner (a member
of it), since any of those could lift the restriction. Run it again after each
``db upgrade`` so that new tables are granted too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text

from ..errors import InputError, StoreError
from .database import Database

__all__ = ["AUDIT_TABLE", "ServiceGrants", "grant_service_role"]

AUDIT_TABLE = "audit_event"
_VERSION_TABLE = "alembic_version"
_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class ServiceGrants:
    """What :func:`grant_service_role` granted (for the command's report)."""

    role: str
    schema: str
    tables: tuple[str, ...]
    audit_table: str
    owner: str


def grant_service_role(database: Database, role: str) -> ServiceGrants:
    """Give ``role`` the service's privileges on ``database`` (run as the tables' owner).

    Raises
    ------
    InputError
        Not PostgreSQL, a bad role name, a role that does not exist, or one that could
        lift the audit log's restriction (superuser, table owner, member of the owner).
    StoreError
        The statements failed (for example when not run as the owner).
    """
    if database.is_sqlite:
        raise InputError(
            "the embedded SQLite database has one user and no roles: service roles are "
            "for a shared PostgreSQL database (ADIT_WB_DATABASE_URL)"
        )
    if not _ROLE_NAME.fullmatch(role):
        raise InputError(f"role name {role!r}: letters, digits and _ only, at most 63")
    with database.engine.begin() as conn:
        schema = str(conn.scalar(text("SELECT current_schema()")))
        found = conn.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).one_or_none()
        if found is None:
            raise InputError(f"role {role!r} does not exist: CREATE ROLE {role} LOGIN PASSWORD …")
        if found[0]:
            raise InputError(f"role {role!r} is a superuser: it could disable the audit triggers")
        rows = conn.execute(
            text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = :s"),
            {"s": schema},
        ).all()
        tables = sorted(str(name) for name, _ in rows)
        owners = sorted({str(owner) for _, owner in rows})
        if AUDIT_TABLE not in tables:
            raise InputError("the schema has no audit table: run `adit-workbench db upgrade` first")
        for owner in owners:
            if owner == role or conn.scalar(
                text("SELECT pg_has_role(:r, :o, 'USAGE')"), {"r": role, "o": owner}
            ):
                raise InputError(
                    f"role {role!r} owns the tables or acts as their owner {owner!r}: the "
                    "service role must be a role of its own (the owner runs migrations only)"
                )
        quote = conn.dialect.identifier_preparer.quote
        who, where = quote(role), quote(schema)
        statements = [f"GRANT USAGE ON SCHEMA {where} TO {who}"]
        statements.append(f"REVOKE CREATE ON SCHEMA {where} FROM {who}")
        for table in tables:
            name = f"{where}.{quote(table)}"
            statements.append(f"REVOKE ALL ON TABLE {name} FROM {who}")
            if table == AUDIT_TABLE:
                privileges = "SELECT, INSERT"
            elif table == _VERSION_TABLE:
                privileges = "SELECT"
            else:
                privileges = "SELECT, INSERT, UPDATE, DELETE"
            statements.append(f"GRANT {privileges} ON TABLE {name} TO {who}")
        statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {where} TO {who}")
        try:
            for statement in statements:
                conn.exec_driver_sql(statement)
        except Exception as exc:  # the driver's error, e.g. not the owner
            raise StoreError(
                f"granting {role!r} failed (run this as the tables' owner): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from None
    return ServiceGrants(role, schema, tuple(tables), AUDIT_TABLE, ", ".join(owners))
