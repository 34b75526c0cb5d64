"""API tokens: shown once, stored hashed, expiring, revocable, last use recorded."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from adit_workbench.access import Access, authenticate_token
from adit_workbench.access.tokens import parse_expiry
from adit_workbench.errors import InputError, NotFound, PermissionDenied
from adit_workbench.store import Database
from adit_workbench.store.access import ApiToken
from adit_workbench.store.models import utcnow

from .conftest import HubUser


@pytest.fixture
def alice(admin: Access, hub_user: HubUser) -> Access:
    admin.admin.add_permission("api", "rest_api")
    return hub_user("alice", "api")


def test_token_is_stored_only_as_its_hash(alice: Access, database: Database) -> None:
    new = alice.tokens.create(expires=7, description="nightly script")
    assert new.token.startswith(new.info.prefix + "_") and len(new.token) > 50
    assert new.token not in repr(new)
    with database.session() as session:
        row = session.scalars(select(ApiToken)).one()
        stored = [str(v) for v in vars(row).values()]
    assert new.token not in stored
    assert row.token_hash == hashlib.sha256(new.token.encode()).hexdigest()
    assert row.description == "nightly script"
    assert row.expires_at is not None
    assert timedelta(days=6, hours=23) < row.expires_at - utcnow() <= timedelta(days=7)


def test_authenticate_records_last_use_and_audits(
    alice: Access, admin: Access, database: Database
) -> None:
    new = alice.tokens.create()
    assert alice.tokens.list()[0].last_used_at is None
    user = authenticate_token(database, new.token)
    assert user.name == "alice"
    [info] = alice.tokens.list()
    assert info.last_used_at is not None and info.active
    uses = admin.admin.audit_events(action="token.use")
    assert [(u.user, u.outcome) for u in uses] == [("alice", "ok")]


@pytest.mark.parametrize("bad", ["", "awb_", "nonsense", "awb_00000000_xyz"])
def test_unknown_tokens_are_refused(database: Database, admin: Access, bad: str) -> None:
    with pytest.raises(PermissionDenied):
        authenticate_token(database, bad)
    [row] = admin.admin.audit_events(action="token.use")
    assert row.outcome == "denied" and row.details["reason"] == "unknown"


def test_wrong_secret_with_a_real_prefix_is_refused(alice: Access, database: Database) -> None:
    new = alice.tokens.create()
    with pytest.raises(PermissionDenied):
        authenticate_token(database, new.token[:-2] + "zz")


def test_revoked_token_is_refused(alice: Access, admin: Access, database: Database) -> None:
    new = alice.tokens.create()
    info = alice.tokens.revoke(new.info.id)
    assert info.revoked_at is not None and not info.active
    with pytest.raises(PermissionDenied):
        authenticate_token(database, new.token)
    denied = admin.admin.audit_events(action="token.use")[-1]
    assert (denied.user, denied.details["reason"]) == ("alice", "revoked")


def test_expired_token_is_refused(alice: Access, database: Database) -> None:
    new = alice.tokens.create(expires=1)
    with database.session() as session:
        session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(PermissionDenied):
        authenticate_token(database, new.token)
    assert not alice.tokens.list()[0].active


def test_never_expiring_needs_its_permission(alice: Access, admin: Access) -> None:
    with pytest.raises(PermissionDenied) as caught:
        alice.tokens.create(expires="never")
    assert caught.value.permission == "never_expiring_token"
    admin.admin.add_permission("api", "never_expiring_token")
    assert alice.tokens.create(expires="never").info.expires_at is None


def test_creating_needs_rest_api(hub_user: HubUser) -> None:
    with pytest.raises(PermissionDenied) as caught:
        hub_user("bob", "students").tokens.create()
    assert caught.value.permission == "rest_api"


def test_only_owner_or_admin_revokes(alice: Access, admin: Access, hub_user: HubUser) -> None:
    new = alice.tokens.create()
    with pytest.raises(NotFound):
        hub_user("bob", "api").tokens.revoke(new.info.id)
    assert admin.tokens.list() == []
    assert [t.user for t in admin.tokens.list(all_users=True)] == ["alice"]
    with pytest.raises(PermissionDenied):
        alice.tokens.list(all_users=True)
    assert admin.tokens.revoke(new.info.id).revoked_at is not None


@pytest.mark.parametrize(
    ("value", "days"), [("1", 1), (7, 7), ("30", 30), (90, 90), ("never", None)]
)
def test_expiry_choices(value: str | int, days: int | None) -> None:
    assert parse_expiry(value) == days


@pytest.mark.parametrize("value", ["2", "forever", 365, "-1"])
def test_other_expiries_are_refused(value: str | int) -> None:
    with pytest.raises(InputError):
        parse_expiry(value)
