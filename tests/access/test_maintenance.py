"""Maintenance mode and the announcement."""

from __future__ import annotations

import pytest

from adit_workbench.access import Access
from adit_workbench.errors import MaintenanceMode

from .conftest import HubUser


def test_new_jobs_refused_with_the_announcement(admin: Access, hub_user: HubUser) -> None:
    alice = hub_user("alice", "radiology")
    alice.require_accepting_jobs()
    assert not alice.site_status().maintenance
    status = admin.admin.set_maintenance(True, message="PACS upgrade until 14:00")
    assert status.maintenance and status.updated_by == "boss"
    with pytest.raises(MaintenanceMode, match="PACS upgrade until 14:00") as caught:
        alice.require_accepting_jobs(action="batch_query.create")
    assert caught.value.retriable and caught.value.announcement == "PACS upgrade until 14:00"
    [row] = admin.admin.audit_events(user="alice", action="batch_query.create")
    assert row.outcome == "denied" and row.details == {"reason": "maintenance"}
    # Off again: the announcement stays until cleared.
    status = admin.admin.set_maintenance(False)
    assert not status.maintenance and status.announcement == "PACS upgrade until 14:00"
    alice.require_accepting_jobs()
    assert admin.admin.set_announcement("").announcement == ""
    actions = [e.action for e in admin.admin.audit_events(user="boss")]
    assert actions.count("site.maintenance") == 2 and "site.announcement" in actions
