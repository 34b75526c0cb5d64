"""A real JupyterHub: each user's kernel sees only that user's nodes and permissions.

Two hub users in different groups; ``aw.connect()`` in each user's kernel verifies the
user with the hub, mirrors the hub groups and applies the group's node access and
permissions held in the shared workbench database. A refused action raises
PermissionDenied naming the permission and leaves an audit row; moving a user to another
hub group changes what the next ``connect()`` sees.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.dicom.spec import FolderSpec, ServerSpec
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from tests.servers.jupyterhub import Hub

pytestmark = pytest.mark.slow

# What a notebook user types, plus a denied admin action; prints one JSON line.
KERNEL_CODE = """
import json
import adit_workbench as aw
from adit_workbench.errors import PermissionDenied
connect = getattr(aw, "connect", None) or __import__("adit_workbench.workbench").workbench.connect
wb = aw_wb = connect()
result = {
    "user": wb.user,
    "groups": list(wb.access.profile().groups),
    "nodes": [spec.name for spec in wb.node_specs()],
    "permissions": sorted(wb.access.permissions()),
}
try:
    wb.add_folder("SNEAKY", "/tmp/sneaky")
except PermissionDenied as exc:
    result["denied"] = exc.permission
print(json.dumps(result))
"""


def _connect_in_kernel(
    hub: Hub, user: str, kernel: str | None = None
) -> tuple[dict[str, Any], str]:
    out, kernel_id = hub.run_in_kernel(user, KERNEL_CODE, kernel=kernel)
    return json.loads(out.strip().splitlines()[-1]), kernel_id


def test_each_users_kernel_sees_only_their_access(
    start_jupyterhub: Callable[..., Hub], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    database = Database(url)
    database.upgrade()
    with database.session() as session:
        node_store.add_server(session, ServerSpec("PACS", "PACS", "127.0.0.1", 11112))
        node_store.add_folder(session, FolderSpec("RESEARCH", tmp_path / "research"))
        node_store.add_server(session, ServerSpec("ARCHIVE", "ARCHIVE", "127.0.0.1", 11113))
    # The deployment's admin prepares access for the hub groups before anyone connects.
    admin = sign_in(database, Identity(getpass.getuser(), IdentitySource.LOCAL), embedded=False)
    admin.admin.grant("radiology", "PACS", source=True)
    admin.admin.add_permission("radiology", "batch_query")
    admin.admin.grant("students", "RESEARCH", destination=True)
    admin.admin.add_permission("students", "explorer")

    hub = start_jupyterhub(
        groups={"radiology": ["alice"], "students": ["bob"]},
        environment={"ADIT_WB_DATABASE_URL": url, "ADIT_WB_DATA_DIR": str(tmp_path / "data")},
    )
    hub.spawn("alice")
    hub.spawn("bob")

    alice, alice_kernel = _connect_in_kernel(hub, "alice")
    bob, _ = _connect_in_kernel(hub, "bob")
    assert alice == {
        "user": "alice",
        "groups": ["radiology"],
        "nodes": ["PACS"],
        "permissions": ["batch_query"],
        "denied": "admin",
    }
    assert bob == {
        "user": "bob",
        "groups": ["students"],
        "nodes": ["RESEARCH"],
        "permissions": ["explorer"],
        "denied": "admin",
    }
    denied = [e for e in admin.admin.audit_events(action="node.add") if e.outcome == "denied"]
    assert sorted((e.user, e.node, e.details["permission"]) for e in denied) == [
        ("alice", "SNEAKY", "admin"),
        ("bob", "SNEAKY", "admin"),
    ]

    # Membership is managed in the hub: the next connect() reflects the change.
    hub.set_groups("alice", ["students"])
    alice, _ = _connect_in_kernel(hub, "alice", kernel=alice_kernel)
    assert alice["groups"] == ["students"]
    assert alice["nodes"] == ["RESEARCH"] and alice["permissions"] == ["explorer"]
    [sync] = admin.admin.audit_events(user="alice", action="membership.sync")[-1:]
    assert sync.details["added"] == ["students"] and sync.details["removed"] == ["radiology"]
    database.dispose()
