"""``wb.access`` answers the same on both backends, so that widgets show a remote user the
controls and nodes they may use; the service still refuses what they may not do."""

from __future__ import annotations

from typing import Any

import pytest

from adit_workbench.widgets._common import has_permission, node_picker, site_banner
from tests.web.conftest import People


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_permissions_nodes_and_site_status_read_alike(wb_for: Any, people: People) -> None:
    alice, nina = wb_for("alice"), wb_for("nina")
    assert alice.access.has("selective_transfer") and has_permission(alice, "batch_query")
    assert not nina.access.has("selective_transfer")
    assert not has_permission(nina, "mass_transfer")
    assert not alice.access.is_admin
    assert alice.access.visible_nodes("destination") == ["OUT"]
    assert alice.access.visible_nodes("source") == ["SANDBOX"]
    assert list(node_picker(alice, "destination", "To").options) == ["OUT"]
    assert alice.access.profile().name == "alice"

    assert site_banner(alice).value == ""
    people.admin.admin.set_maintenance(True, message="Back at noon")
    status = alice.access.site_status()
    assert status.maintenance and status.announcement == "Back at noon"
    assert "Back at noon" in site_banner(alice).value


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_admin_dashboard_reads_the_audit_log_on_both_backends(
    wb_for: Any, people: People
) -> None:
    from adit_workbench.errors import PermissionDenied
    from adit_workbench.widgets import Admin

    boss = wb_for("boss")
    with pytest.raises(PermissionDenied):
        wb_for("alice").access.admin.audit_events(limit=5)
    here = people.admin.admin.audit_events(action="audit.read", user="alice")
    assert [(e.user, e.outcome) for e in here] == [("alice", "denied")]
    seen = boss.access.admin.audit_events(action="audit.read")
    assert [(e.id, e.user, e.action, e.outcome) for e in seen[: len(here)]] == [
        (e.id, e.user, e.action, e.outcome) for e in here
    ]
    widget = Admin(boss)
    try:
        assert "aw-audit-list" in widget.audit.value and "alice" in widget.audit.value
        assert widget.group.options  # the groups, read through the same backend
    finally:
        widget.close()
