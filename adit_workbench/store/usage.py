"""Usage statistics of the DICOMweb service, read from the audit log.

Every DICOMweb request leaves one ``dicomweb.qido``, ``dicomweb.wado`` or
``dicomweb.stow`` row whose details carry its counts (``count`` for QIDO matches and
WADO instances sent, ``stored`` for STOW, ``bytes`` for what WADO sent and STOW
received). A refused access check adds a row of its own under the same action (its
details name the ``permission``); it is not counted twice. Summing those rows per user
and node is all the statistics need, so there is no table of counters to keep in step
with the audit log: the audit log is the record.

The sums are made here in Python over the rows of the window (two columns and the JSON
details, no ORM objects): the audit details are JSON on SQLite and PostgreSQL alike, and
their JSON operators differ. A window of a year of a department's DICOMweb traffic is
some hundred thousand rows, read in well under a minute; callers narrow it with
``since``/``until``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .access import AuditEvent

__all__ = ["USAGE_ACTIONS", "UsageRow", "dicomweb_usage"]

#: The audit actions counted, by the service they stand for.
USAGE_ACTIONS = {"dicomweb.qido": "qido", "dicomweb.wado": "wado", "dicomweb.stow": "stow"}


@dataclass
class UsageRow:
    """The DICOMweb use of one user on one node within a time window."""

    user: str
    node: str
    qido_requests: int = 0
    #: Studies, series or instances the searches answered.
    qido_matches: int = 0
    wado_requests: int = 0
    #: Instances (or metadata items) sent.
    wado_instances: int = 0
    wado_bytes: int = 0
    stow_requests: int = 0
    #: Instances stored.
    stow_instances: int = 0
    #: Bytes of the body parts received.
    stow_bytes: int = 0
    #: Requests refused for access (403, or 404 for a node the user may not see).
    denied: int = 0
    #: Requests that failed otherwise (bad input, PACS errors, aborted streams).
    failed: int = 0


def _number(details: dict[str, Any], key: str) -> int:
    value = details.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def dicomweb_usage(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    user: str | None = None,
    node: str | None = None,
) -> list[UsageRow]:
    """Per user and node, from ``since`` (inclusive) to ``until`` (exclusive), sorted by
    user then node (callers check the admin permission)."""
    query = select(
        AuditEvent.user_name, AuditEvent.node, AuditEvent.action, AuditEvent.outcome,
        AuditEvent.details,
    ).where(AuditEvent.action.in_(tuple(USAGE_ACTIONS)))  # fmt: skip
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if user is not None:
        query = query.where(AuditEvent.user_name == user)
    if node is not None:
        query = query.where(AuditEvent.node == node)
    rows: dict[tuple[str, str], UsageRow] = {}
    for user_name, node_name, action, outcome, details in session.execute(
        query.execution_options(yield_per=1000)
    ):
        facts = details if isinstance(details, dict) else {}
        if "permission" in facts:
            continue  # the access check's own row of a refusal; the request has its row
        key = (user_name, node_name or "")
        row = rows.get(key)
        if row is None:
            row = rows[key] = UsageRow(user_name, node_name or "")
        kind = USAGE_ACTIONS[action]
        if kind == "qido":
            row.qido_requests += 1
            row.qido_matches += _number(facts, "count")
        elif kind == "wado":
            row.wado_requests += 1
            row.wado_instances += _number(facts, "count")
            row.wado_bytes += _number(facts, "bytes")
        else:
            row.stow_requests += 1
            row.stow_instances += _number(facts, "stored")
            row.stow_bytes += _number(facts, "bytes")
        if outcome == "denied":
            row.denied += 1
        elif outcome == "failed":
            row.failed += 1
    return [rows[key] for key in sorted(rows)]
