"""The audit log: append rows, read them back (admins), export them to CSV.

Rows carry what was done in ``details`` (node, level, filters, UIDs, counts). Filters can
hold patient IDs, so details are written to the database only: never to a log message,
never into an exception text. The table is append-only; there is no update or delete
function here, and triggers in the database refuse both.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..cells import neutralize
from ..store.access import AuditEvent

__all__ = ["CSV_COLUMNS", "AuditRecord", "Outcome", "read_events", "record", "write_csv"]

CSV_COLUMNS = ("id", "at", "user", "action", "node", "outcome", "details")


class Outcome(StrEnum):
    """How an audited action ended."""

    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"


@dataclass(frozen=True)
class AuditRecord:
    """One row of the audit log, detached from the database."""

    id: int
    at: datetime
    user: str
    action: str
    node: str | None
    outcome: Outcome
    details: dict[str, Any]

    def __repr__(self) -> str:
        # Details stay out of reprs: a notebook output is as durable as a log file.
        when = f"{self.at:%Y-%m-%d %H:%M:%S}"
        return f"<AuditRecord {self.id} {when} {self.user} {self.action} {self.outcome}>"


def _jsonable(details: Mapping[str, Any] | None) -> dict[str, Any]:
    # Dates, UIDs as objects, enums: stored as their text rather than failing the action.
    return json.loads(json.dumps(dict(details or {}), default=str))


def record(
    session: Session,
    user: str,
    action: str,
    *,
    node: str | None = None,
    details: Mapping[str, Any] | None = None,
    outcome: Outcome | str = Outcome.OK,
) -> None:
    """Append one row to the audit log in ``session`` (committed with it)."""
    session.add(
        AuditEvent(
            user_name=user,
            action=action,
            node=node,
            outcome=Outcome(outcome).value,
            details=_jsonable(details),
        )
    )


def read_events(
    session: Session,
    *,
    user: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[AuditRecord]:
    """Audit rows, oldest first, optionally filtered (callers check the admin permission)."""
    query = select(AuditEvent).order_by(AuditEvent.id)
    if user is not None:
        query = query.where(AuditEvent.user_name == user)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if limit is not None:
        # The newest ``limit`` rows, still returned oldest first.
        query = query.order_by(None).order_by(AuditEvent.id.desc()).limit(limit)
    rows = [_to_record(row) for row in session.scalars(query)]
    return sorted(rows, key=lambda r: r.id)


def write_csv(records: Iterable[AuditRecord], target: str | Path | IO[str]) -> int:
    """Write records as CSV (details as JSON in one column); returns the row count."""
    if isinstance(target, (str, Path)):
        with Path(target).open("w", newline="", encoding="utf-8") as handle:
            return write_csv(records, handle)
    writer = csv.writer(target)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for rec in records:
        writer.writerow(
            [
                rec.id,
                rec.at.isoformat(),
                neutralize(rec.user),
                neutralize(rec.action),
                neutralize(rec.node or ""),
                rec.outcome.value,
                json.dumps(rec.details, sort_keys=True, ensure_ascii=False),
            ]
        )
        count += 1
    return count


def _to_record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        id=row.id,
        at=row.at,
        user=row.user_name,
        action=row.action,
        node=row.node,
        outcome=Outcome(row.outcome),
        details=dict(row.details or {}),
    )
