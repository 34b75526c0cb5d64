"""Authentication by the service: tokens checked on every request, cookies signed, the
identity never taken from the client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from adit_workbench.store.access import ApiToken
from adit_workbench.store.models import utcnow
from tests.web.conftest import People, Running

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_token_revoked_or_expired_after_use_is_refused_at_once(
    service: Running, people: People
) -> None:
    alice = people.access["alice"]
    new = alice.tokens.create(expires=30)
    session = service.session(new.token)
    assert session.get(service.url + "api/me").json()["user"] == "alice"
    alice.tokens.revoke(new.info.id)
    assert session.get(service.url + "api/me").status_code == 401
    other = alice.tokens.create(expires=30)
    session = service.session(other.token)
    assert session.get(service.url + "api/me").status_code == 200
    with people.database.session() as db:
        db.execute(
            update(ApiToken)
            .where(ApiToken.id == other.info.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert session.get(service.url + "api/me").status_code == 401


def test_rest_api_permission_is_required_for_tokens(service: Running, people: People) -> None:
    group = people.access["nina"].profile().groups[0]
    people.admin.admin.remove_permission(group, "rest_api")
    answer = service.session(people.token("nina")).get(service.url + "api/me")
    assert answer.status_code == 403 and "rest_api" in answer.json()["message"]


def test_identity_headers_and_parameters_are_ignored(service: Running, people: People) -> None:
    session = service.session(people.token("nina"))
    headers = {"X-Forwarded-User": "boss", "X-Remote-User": "boss", "JUPYTERHUB_USER": "boss"}
    me = session.get(service.url + "api/me?user=boss", headers=headers).json()
    assert me["user"] == "nina" and not me["admin"]


def test_bearer_scheme_and_cookie(service: Running, people: People) -> None:
    plain = service.session()
    bearer = {"Authorization": f"Bearer {people.token('sam')}"}
    assert plain.get(service.url + "api/me", headers=bearer).json()["user"] == "sam"
    auth = service.server.config.app.state.service.auth
    # A cookie is honoured only when the service signed it.
    good = auth.seal(people.token("sam"))
    assert plain.get(service.url + "api/me", cookies={"adit-workbench-session": good}).ok
    forged = good[:-1] + ("0" if good[-1] != "0" else "1")
    answer = plain.get(service.url + "api/me", cookies={"adit-workbench-session": forged})
    assert answer.status_code == 401
