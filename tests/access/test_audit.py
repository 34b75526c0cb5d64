"""The audit log: append-only in the database, readable by admins, exported as CSV."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update

from adit_workbench.access import Access
from adit_workbench.errors import StoreError
from adit_workbench.store import Database
from adit_workbench.store.access import AuditEvent

from .conftest import HubUser


def test_rows_cannot_be_updated_or_deleted(admin: Access, database: Database) -> None:
    admin.audit("query", node="PACS", details={"filters": {"patient_id": "1001"}})
    with pytest.raises(StoreError), database.session() as session:
        session.execute(update(AuditEvent).values(outcome="failed"))
    with pytest.raises(StoreError), database.session() as session:
        session.execute(delete(AuditEvent))
    if not database.is_sqlite:
        with pytest.raises(StoreError), database.session() as session:
            session.execute(text("TRUNCATE audit_event"))
    assert [e.outcome for e in admin.admin.audit_events(action="query")] == ["ok"]


def test_grant_and_permission_changes_are_audited(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("radiology", "PACS", source=True)
    admin.admin.add_permission("radiology", "explorer")
    admin.admin.remove_permission("radiology", "explorer")
    admin.admin.revoke("radiology", "PACS")
    rows = [e for e in admin.admin.audit_events(user="boss") if e.action.startswith("access.")]
    assert [(e.action, e.node, e.outcome) for e in rows] == [
        ("access.grant", "PACS", "ok"),
        ("access.perm.add", None, "ok"),
        ("access.perm.remove", None, "ok"),
        ("access.revoke", "PACS", "ok"),
    ]
    assert rows[0].details == {"group": "radiology", "source": True, "destination": False}


def test_csv_export_keeps_details_and_is_audited(
    admin: Access, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin.audit("query", node="PACS", details={"level": "STUDY", "filters": {"patient_id": "P-77"}})
    target = tmp_path / "audit.csv"
    count = admin.admin.export_audit(target)
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == count and rows[0].keys() == {
        "id",
        "at",
        "user",
        "action",
        "node",
        "outcome",
        "details",
    }
    [query] = [r for r in rows if r["action"] == "query"]
    assert json.loads(query["details"])["filters"] == {"patient_id": "P-77"}
    assert admin.admin.audit_events(action="audit.export")[0].details == {"rows": count}
    # Identifying values live in the database only: not in any log record or repr.
    assert "P-77" not in caplog.text
    assert all("P-77" not in repr(e) for e in admin.admin.audit_events())


def test_export_to_a_stream_and_limits(admin: Access) -> None:
    for i in range(5):
        admin.audit("echo", node="PACS", details={"i": i})
    assert [e.details["i"] for e in admin.admin.audit_events(action="echo", limit=2)] == [3, 4]
    buffer = io.StringIO()
    assert admin.admin.export_audit(buffer) >= 5
    assert buffer.getvalue().startswith("id,at,user,action,node,outcome,details")


def test_odd_detail_values_are_stored_as_text(admin: Access) -> None:
    import datetime as dt

    admin.audit("query", details={"date": dt.date(2020, 1, 2), "uids": ("1.2.3",)})
    [row] = admin.admin.audit_events(action="query")
    assert row.details == {"date": "2020-01-02", "uids": ["1.2.3"]}


def test_csv_export_neutralizes_formula_cells(admin: Access, database: Database) -> None:
    """A user or node name that starts like a formula is text in the export."""
    from adit_workbench.access.audit import record

    with database.session() as session:
        record(session, '=HYPERLINK("http://x")', "query", node="@SUM(A1)")
    buffer = io.StringIO()
    admin.admin.export_audit(buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    [crafted] = [r for r in rows if "HYPERLINK" in r["user"]]
    assert crafted["user"] == '\'=HYPERLINK("http://x")'
    assert crafted["node"] == "'@SUM(A1)"
