"""Signing in: hub groups mirrored on each connect, local bootstrap, audit of changes."""

from __future__ import annotations

from adit_workbench.access import Access, Identity, IdentitySource, sign_in
from adit_workbench.store import Database

from .conftest import HubUser


def test_hub_groups_are_mirrored_on_each_sign_in(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("radiology", "PACS", source=True)
    admin.admin.grant("students", "RESEARCH", destination=True)
    alice = hub_user("alice", "radiology")
    assert alice.visible_nodes() == ["PACS"]
    alice = hub_user("alice", "students")
    assert alice.profile().groups == ("students",)
    assert alice.visible_nodes() == ["RESEARCH"]
    syncs = admin.admin.audit_events(user="alice", action="membership.sync")
    assert [(s.details["added"], s.details["removed"]) for s in syncs] == [
        (["radiology"], []),
        (["students"], ["radiology"]),
    ]


def test_unchanged_groups_leave_no_audit_row(admin: Access, hub_user: HubUser) -> None:
    for _ in range(3):
        hub_user("alice", "radiology")
    assert len(admin.admin.audit_events(user="alice", action="membership.sync")) == 1


def test_new_hub_groups_are_created_empty(admin: Access, hub_user: HubUser) -> None:
    hub_user("alice", "brand-new")
    assert admin.admin.group("brand-new").permissions == ()


def test_hub_admin_flag_follows_the_hub(admin: Access, hub_user: HubUser) -> None:
    assert hub_user("hanna", hub_admin=True).is_admin
    assert not hub_user("hanna", hub_admin=False).is_admin


def test_embedded_hub_user_keeps_admin_of_own_database(database: Database) -> None:
    identity = Identity("alice", IdentitySource.JUPYTERHUB, groups=("radiology",))
    alice = sign_in(database, identity, embedded=True)
    assert alice.is_admin and set(alice.profile().groups) == {"admins", "radiology"}


def test_last_seen_is_recorded(admin: Access, hub_user: HubUser) -> None:
    hub_user("alice")
    [alice] = [u for u in admin.admin.users() if u.name == "alice"]
    assert alice.last_seen_at is not None
