"""Permission and node checks: what passes, what is refused, and the audit rows left."""

from __future__ import annotations

import pytest

from adit_workbench.access import Access, NodeRole, Permission
from adit_workbench.errors import InputError, NodeAccessDenied, NotFound, PermissionDenied
from adit_workbench.store import Database

from .conftest import HubUser


def test_admin_bootstrap_holds_every_permission(admin: Access) -> None:
    profile = admin.profile()
    assert profile.is_admin and profile.groups == ("admins",)
    assert profile.permissions == frozenset(Permission)
    assert admin.visible_nodes() == ["ARCHIVE", "PACS", "RESEARCH"]


def test_second_local_user_is_not_admin(admin: Access, database: Database) -> None:
    from adit_workbench.access import Identity, IdentitySource, sign_in

    other = sign_in(database, Identity("carol", IdentitySource.SERVICE), embedded=False)
    assert other.permissions() == frozenset()
    assert other.visible_nodes() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # embedded means SQLite
def test_embedded_user_is_admin_even_when_others_are(admin: Access, database: Database) -> None:
    from adit_workbench.access import Identity, IdentitySource, sign_in

    me = sign_in(database, Identity("dave", IdentitySource.LOCAL), embedded=True)
    assert me.is_admin


def test_group_permissions_are_unioned(admin: Access, hub_user: HubUser) -> None:
    admin.admin.add_permission("radiology", "batch_query")
    admin.admin.add_permission("students", Permission.EXPLORER)
    alice = hub_user("alice", "radiology", "students")
    assert alice.permissions() == {Permission.BATCH_QUERY, Permission.EXPLORER}
    alice.require(Permission.BATCH_QUERY)
    assert alice.has("explorer") and not alice.has("admin")


def test_staff_implies_unlimited_batch_size(admin: Access, hub_user: HubUser) -> None:
    admin.admin.add_permission("ops", "staff")
    assert hub_user("olga", "ops").has(Permission.UNLIMITED_BATCH_SIZE)


def test_hub_admin_flag_gives_every_permission(hub_user: HubUser) -> None:
    root = hub_user("root-user", hub_admin=True)
    assert root.is_admin and root.visible_nodes() == ["ARCHIVE", "PACS", "RESEARCH"]


def test_denied_permission_names_it_and_leaves_an_audit_row(
    admin: Access, hub_user: HubUser
) -> None:
    bob = hub_user("bob", "students")
    with pytest.raises(PermissionDenied) as caught:
        bob.require(Permission.MASS_TRANSFER, action="mass_transfer.create")
    assert caught.value.permission == "mass_transfer"
    assert "mass_transfer" in str(caught.value)
    [row] = admin.admin.audit_events(user="bob", action="mass_transfer.create")
    assert row.outcome == "denied" and row.details["permission"] == "mass_transfer"


def test_node_access_per_role(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("radiology", "PACS", source=True)
    admin.admin.grant("radiology", "RESEARCH", destination=True)
    alice = hub_user("alice", "radiology")
    assert alice.visible_nodes() == ["PACS", "RESEARCH"]
    assert alice.visible_nodes("source") == ["PACS"]
    assert alice.visible_nodes(NodeRole.DESTINATION) == ["RESEARCH"]
    alice.require_node("PACS", "source")
    alice.require_node("RESEARCH")
    with pytest.raises(NodeAccessDenied) as caught:
        alice.require_node("PACS", "destination", action="transfer")
    assert caught.value.node == "PACS" and caught.value.role == "destination"
    assert "PACS" in str(caught.value) and "destination" in str(caught.value)
    with pytest.raises(NodeAccessDenied):
        alice.require_node("ARCHIVE")
    # A node that does not exist is refused like an invisible one.
    with pytest.raises(NodeAccessDenied):
        alice.require_node("NOPE")
    denied = admin.admin.audit_events(user="alice")
    assert [(e.action, e.node, e.outcome) for e in denied if e.outcome == "denied"] == [
        ("transfer", "PACS", "denied"),
        ("require.node", "ARCHIVE", "denied"),
        ("require.node", "NOPE", "denied"),
    ]


def test_admin_gets_not_found_for_a_missing_node(admin: Access) -> None:
    admin.require_node("PACS", "destination")
    with pytest.raises(NotFound):
        admin.require_node("NOPE")


def test_grant_adds_roles_and_revoke_removes_them(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("radiology", "PACS", source=True)
    info = admin.admin.grant("radiology", "PACS", destination=True)
    assert info.nodes == {"PACS": {NodeRole.SOURCE, NodeRole.DESTINATION}}
    info = admin.admin.revoke("radiology", "PACS", "source")
    assert info.nodes == {"PACS": {NodeRole.DESTINATION}}
    info = admin.admin.revoke("radiology", "PACS")
    assert info.nodes == {}
    with pytest.raises(NotFound):
        admin.admin.revoke("radiology", "PACS")
    with pytest.raises(NotFound):
        admin.admin.grant("radiology", "NOPE")
    assert admin.admin.grant("both", "PACS").nodes == {"PACS": set(NodeRole)}


def test_removing_a_node_removes_its_access(
    admin: Access, hub_user: HubUser, database: Database
) -> None:
    from adit_workbench.store import nodes as node_store

    admin.admin.grant("radiology", "ARCHIVE", source=True)
    alice = hub_user("alice", "radiology")
    assert alice.visible_nodes() == ["ARCHIVE"]
    with database.session() as session:
        node_store.remove_node(session, "ARCHIVE")
    assert alice.visible_nodes() == []


def test_revoked_permission_is_seen_at_once(admin: Access, hub_user: HubUser) -> None:
    """No caching: a worker checking again sees the revocation."""
    admin.admin.add_permission("radiology", "batch_transfer")
    alice = hub_user("alice", "radiology")
    alice.require("batch_transfer")
    admin.admin.remove_permission("radiology", "batch_transfer")
    with pytest.raises(PermissionDenied):
        alice.require("batch_transfer")


def test_admin_operations_need_admin(admin: Access, hub_user: HubUser) -> None:
    bob = hub_user("bob", "students")
    for call in (
        lambda: bob.admin.grant("students", "PACS"),
        lambda: bob.admin.revoke("students", "PACS"),
        lambda: bob.admin.add_permission("students", "admin"),
        lambda: bob.admin.remove_permission("students", "explorer"),
        lambda: bob.admin.groups(),
        lambda: bob.admin.group("students"),
        lambda: bob.admin.set_members("students", ["bob"]),
        lambda: bob.admin.users(),
        lambda: bob.admin.audit_events(),
        lambda: bob.admin.export_audit("/dev/null"),
        lambda: bob.admin.set_maintenance(True),
        lambda: bob.admin.set_announcement("hi"),
    ):
        with pytest.raises(PermissionDenied) as caught:
            call()
        assert caught.value.permission == "admin"
    assert bob.permissions() == frozenset()
    assert len([e for e in admin.admin.audit_events(user="bob") if e.outcome == "denied"]) == 12


def test_unknown_user_has_nothing(database: Database) -> None:
    ghost = Access(database, "ghost")
    assert ghost.permissions() == frozenset() and ghost.visible_nodes() == []
    with pytest.raises(PermissionDenied):
        ghost.require("explorer")


def test_bad_names_are_input_errors(admin: Access) -> None:
    with pytest.raises(InputError, match="valid: selective_transfer"):
        admin.require("fly")
    with pytest.raises(InputError):
        admin.require_node("PACS", "sideways")
    assert admin.admin.add_permission("g", "Batch-Query").permissions == ("batch_query",)


def test_groups_and_users_listing(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("radiology", "PACS", source=True)
    admin.admin.add_permission("radiology", "explorer")
    hub_user("alice", "radiology")
    [radiology] = [g for g in admin.admin.groups() if g.name == "radiology"]
    assert radiology.users == ("alice",) and radiology.permissions == ("explorer",)
    users = {u.name: u for u in admin.admin.users()}
    assert users["boss"].admin and users["boss"].source == "service"
    assert not users["alice"].admin and users["alice"].groups == ("radiology",)
    assert users["alice"].source == "jupyterhub"
