"""Identity: local OS user, or the hub user verified with the hub API (a stand-in hub here;
the real JupyterHub is exercised in test_jupyterhub.py)."""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from adit_workbench.access import IdentitySource, resolve_identity
from adit_workbench.errors import ConfigurationError, PermissionDenied

USERS = {
    "tok-alice": {"kind": "user", "name": "alice", "admin": False, "groups": ["radiology"]},
    "tok-admin": {"kind": "user", "name": "admin", "admin": True, "groups": []},
    "tok-service": {"kind": "service", "name": "dicom-api"},
}


class _Hub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        token = self.headers.get("Authorization", "").removeprefix("token ")
        model = USERS.get(token)
        if self.path != "/hub/api/user" or model is None:
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps(model).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hub/api"
    server.shutdown()


def _env(api_url: str, user: str, token: str) -> dict[str, str]:
    return {"JUPYTERHUB_USER": user, "JUPYTERHUB_API_URL": api_url, "JUPYTERHUB_API_TOKEN": token}


def test_outside_a_hub_the_os_user() -> None:
    identity = resolve_identity({})
    assert identity.name == getpass.getuser() and identity.source is IdentitySource.LOCAL


def test_hub_user_verified_with_groups(api_url: str) -> None:
    identity = resolve_identity(_env(api_url, "alice", "tok-alice"))
    assert identity.source is IdentitySource.JUPYTERHUB
    assert (identity.name, identity.admin, identity.groups) == ("alice", False, ("radiology",))
    assert resolve_identity(_env(api_url, "admin", "tok-admin")).admin


def test_a_claim_that_does_not_match_the_token_is_refused(api_url: str) -> None:
    with pytest.raises(PermissionDenied, match="does not match"):
        resolve_identity(_env(api_url, "bob", "tok-alice"))


def test_rejected_or_service_token_is_refused(api_url: str) -> None:
    with pytest.raises(PermissionDenied, match="did not accept"):
        resolve_identity(_env(api_url, "alice", "stolen"))
    with pytest.raises(PermissionDenied, match="not belong to a user"):
        resolve_identity(_env(api_url, "dicom-api", "tok-service"))


def test_user_without_token_is_refused_not_downgraded_to_local() -> None:
    with pytest.raises(PermissionDenied, match="cannot be verified"):
        resolve_identity({"JUPYTERHUB_USER": "alice"})


def test_unreachable_hub_is_a_configuration_error() -> None:
    from tests.servers._util import free_port

    env = _env(f"http://127.0.0.1:{free_port()}/hub/api", "alice", "tok-alice")
    with pytest.raises(ConfigurationError, match="unreachable"):
        resolve_identity(env)


def test_the_operator_setting_names_a_service_identity() -> None:
    identity = resolve_identity({}, operator="ops")
    assert identity.name == "ops" and identity.source is IdentitySource.SERVICE
    # Under a hub the hub user wins: the operator setting never reaches user servers.
    with pytest.raises(PermissionDenied):
        resolve_identity({"JUPYTERHUB_USER": "alice"}, operator="ops")


def test_local_identity_only_on_sqlite(database_url: str) -> None:
    from adit_workbench.access import Identity, sign_in
    from adit_workbench.store import Database

    database = Database(database_url)
    database.upgrade()
    try:
        me = Identity("me", IdentitySource.LOCAL)
        if database.is_sqlite:
            assert sign_in(database, me, embedded=False).is_admin
        else:
            with pytest.raises(PermissionDenied, match="not an identity on a shared database"):
                sign_in(database, me, embedded=False)
            ops = sign_in(database, Identity("ops", IdentitySource.SERVICE), embedded=False)
            assert ops.is_admin  # the first operator of a fresh shared database
    finally:
        database.dispose()
