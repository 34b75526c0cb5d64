"""Live nodes handed out by the facade check the user's role on every call and audit it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from adit_workbench.access import Access
from adit_workbench.access.guarded import GuardedNode
from adit_workbench.config import Settings
from adit_workbench.errors import NodeAccessDenied, NodeUnreachable, PermissionDenied
from adit_workbench.store import Database
from adit_workbench.workbench import Workbench

from .conftest import HubUser


class FakeNode:
    """Stands in for a DICOM node; records what reached it."""

    name = "PACS"
    capabilities = "caps"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def echo(self) -> None:
        self.calls.append("echo")

    def probe(self) -> str:
        self.calls.append("probe")
        return "probed"

    def find(self, level: str, query: Dataset, *, limit: int | None = None) -> Iterator[str]:
        self.calls.append("find")
        return iter(["a", "b"])

    def find_studies(self, **filters: Any) -> list[str]:
        self.calls.append("find_studies")
        return ["s1", "s2", "s3"]

    def retrieve(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        self.calls.append("retrieve")
        return iter([])

    def store(self, items: list[str]) -> str:
        self.calls.append("store")
        if not items:
            raise NodeUnreachable("PACS", "C-STORE", "refused")
        return "stored"

    def brand_new_feature(self) -> str:
        self.calls.append("brand_new_feature")
        return "new"

    def close(self) -> None:
        self.calls.append("close")


def test_source_role_queries_and_is_audited(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("radiology", "PACS", source=True)
    fake = FakeNode()
    node = GuardedNode(fake, hub_user("alice", "radiology"))
    query = Dataset()
    query.PatientID = "P-1001"
    query.StudyDate = ""
    assert list(node.find("STUDY", query, limit=5)) == ["a", "b"]
    assert node.find_studies(patient_id="P-1001", modality="CT") == ["s1", "s2", "s3"]
    node.echo()
    assert node.capabilities == "caps"
    with pytest.raises(NodeAccessDenied) as caught:
        node.store(["x"])
    assert caught.value.role == "destination"
    with pytest.raises(PermissionDenied):
        node.probe()
    assert fake.calls == ["find", "find_studies", "echo"]
    rows = admin.admin.audit_events(user="alice")
    queries = [r for r in rows if r.action == "query"]
    assert queries[0].details == {
        "method": "find",
        "keys": {"PatientID": "P-1001"},
        "level": "STUDY",
        "limit": 5,
        "streamed": True,
    }
    assert queries[1].details == {
        "method": "find_studies",
        "filters": {"patient_id": "P-1001", "modality": "CT"},
        "count": 3,
    }
    assert [(r.action, r.outcome) for r in rows if r.action in ("store", "node.probe")] == [
        ("store", "denied"),
        ("node.probe", "denied"),
    ]


def test_destination_role_stores_and_failures_are_audited(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("sink", "PACS", destination=True)
    fake = FakeNode()
    node = GuardedNode(fake, hub_user("bob", "sink"))
    assert node.store(["x", "y"]) == "stored"
    with pytest.raises(NodeUnreachable):
        node.store([])
    with pytest.raises(NodeAccessDenied):
        node.find_studies(patient_id="1")
    with pytest.raises(NodeAccessDenied):
        node.retrieve("STUDY", Dataset())
    stores = admin.admin.audit_events(user="bob", action="store")
    assert [(s.outcome, s.details.get("items")) for s in stores] == [("ok", 2), ("failed", None)]
    assert stores[1].details["error"] == "NodeUnreachable"
    [retrieve] = admin.admin.audit_events(user="bob", action="retrieve")
    assert retrieve.outcome == "denied"


def test_unknown_methods_fail_closed(admin: Access, hub_user: HubUser) -> None:
    fake = FakeNode()
    node = GuardedNode(fake, hub_user("carol", "nobody"))
    with pytest.raises(NodeAccessDenied):
        node.brand_new_feature()
    admin.admin.grant("nobody", "PACS", source=True)
    assert node.brand_new_feature() == "new"
    [row] = admin.admin.audit_events(user="carol", action="node.brand_new_feature")[-1:]
    assert row.outcome == "ok"
    with node:
        pass
    assert fake.calls[-1] == "close"


def test_facade_hands_out_guarded_nodes(
    settings: Settings, database: Database, admin: Access, hub_user: HubUser, tmp_path: Path
) -> None:
    Workbench(settings, database, admin).add_folder("DROP", tmp_path)
    admin.admin.grant("radiology", "DROP", source=True)
    wb = Workbench(settings, database, hub_user("alice", "radiology"))
    node = wb.node("DROP")
    assert isinstance(node, GuardedNode)
    wb.echo("DROP")
    assert list(node.find("STUDY", Dataset())) == []
    actions = [(e.action, e.node) for e in admin.admin.audit_events(user="alice")]
    assert ("node.echo", "DROP") in actions and ("query", "DROP") in actions
