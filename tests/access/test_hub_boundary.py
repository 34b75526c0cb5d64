"""The shipped hub configuration under a real JupyterHub: user servers hold no database
URL, Redis URL or secret; the workbench service and two workers hold them.

Two set-ups of the same config:

* ``own-accounts``: user servers run as their own unprivileged OS accounts and the
  service as its own (the deployment ``deploy/README.md`` describes); a user's kernel
  cannot read the secret, and no file or process environment it can read holds a
  credential. Needs root: skipped with a message otherwise, failing when ``CI=true``.
* ``shared-account``: every process runs as the hub's account (SimpleLocalProcessSpawner,
  demos): the environment boundary alone, which runs everywhere.

The set-ups are in ``tests/access/hub_fixtures.py``; the attacks a user's kernel tries
against the same hub are in ``tests/access/test_kernel_attacks.py``.

And the service's answer to a hub change: a user deleted at the hub, or removed from a
group, is refused (or loses the group's node) within ``ADIT_WB_AUTH_CACHE_SECONDS``.
"""

from __future__ import annotations

import json
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy.engine import make_url

from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from tests.access.hub_fixtures import KERNEL_SCAN, SERVER_START, os_accounts, processes_of
from tests.access.hub_fixtures import shipped_hub as start_shipped_hub
from tests.servers._util import wait_until
from tests.servers.jupyterhub import Hub
from tests.servers.shared_python import shared_python  # noqa: F401 (a fixture)

ON_POSTGRES = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture(params=["own-accounts", "shared-account"])
def accounts(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Who runs what (:func:`tests.access.hub_fixtures.os_accounts`)."""
    shared = request.getfixturevalue("shared_python") if request.param == "own-accounts" else None
    with os_accounts(request.param, shared) as found:
        yield found


@pytest.fixture
def service_settings() -> dict[str, str]:
    """More ``ADIT_WB_*`` settings for the service (a test parametrizes this)."""
    return {}


@pytest.fixture
def shipped_hub(
    accounts: dict[str, Any],
    configurable_http_proxy: str,
    database_url: str,
    redis_url: str,
    service_settings: dict[str, str],
) -> Iterator[tuple[Hub, dict[str, str]]]:
    """The shipped config under a real hub (:func:`tests.access.hub_fixtures.shipped_hub`)."""
    with start_shipped_hub(
        accounts, configurable_http_proxy, database_url, redis_url, service_settings
    ) as running:
        yield running


@ON_POSTGRES
def test_user_servers_hold_only_the_service_url(
    shipped_hub: tuple[Hub, dict[str, str]], accounts: dict[str, Any]
) -> None:
    hub, settings = shipped_hub
    service, alice = accounts["service"], accounts["alice"]
    secret = Path(settings["secret"])

    # The secret belongs to the service's account alone.
    info = secret.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == service.pw_uid
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert secret.parent.stat().st_uid == service.pw_uid

    # The service and two workers run as that account and hold the settings.
    def trusted_side() -> bool:
        procs = processes_of(service.pw_uid)
        workers = [c for c, e in procs if " worker --name workbench-worker-" in c]
        with_secret = [e for _, e in procs if e.get("ADIT_WB_SECRET_FILE") == str(secret)]
        return len(workers) == 2 and len(with_secret) >= 3

    wait_until(trusted_side, 60, "the workbench service and two workers", proc=hub.proc)
    for _, environ in processes_of(service.pw_uid):
        if environ.get("ADIT_WB_SECRET_FILE") == str(secret):
            assert environ["ADIT_WB_DATABASE_URL"] == settings["ADIT_WB_DATABASE_URL"]
            assert environ["ADIT_WB_REDIS_URL"] == settings["ADIT_WB_REDIS_URL"]

    # An ordinary user's kernel: only the service URL (and, on its own account, nothing
    # to read: not the secret, no file or process environment holding a credential).
    hub.spawn(alice, timeout=SERVER_START)
    needles = [
        settings["ADIT_WB_DATABASE_URL"],
        str(make_url(settings["ADIT_WB_DATABASE_URL"]).password),  # made per run
        settings["ADIT_WB_REDIS_URL"],
        str(make_url(settings["ADIT_WB_REDIS_URL"]).password),  # requirepass, per run
        secret.read_text().strip(),
    ]
    # Everything under the test's folder (hub, homes, service data), and what was written
    # to /tmp since it exists: older files there (the shared interpreter, other checkouts
    # of this repository, whose test sources name the fixture's password) predate the hub.
    roots = [(str(accounts["base"]), 0), ("/tmp", accounts["since"])] if accounts["own"] else []
    args = (str(secret), str(secret.parent), needles, roots)
    code = KERNEL_SCAN.format(args=args)
    if not accounts["own"]:  # root reads everything: only the environment is meaningful
        code = code.replace('for pid in os.listdir("/proc"):', "for pid in []:")
    out, _ = hub.run_in_kernel(alice, code, timeout=SERVER_START)
    seen = json.loads(out.strip().splitlines()[-1])
    leaked = {k for k in seen["env"] if k.startswith("ADIT_WB_") and k != "ADIT_WB_SERVICE_URL"}
    assert leaked == set()
    assert seen["env"]["ADIT_WB_SERVICE_URL"] == f"{hub.url}/services/workbench/"
    assert not any(n in v for v in seen["env"].values() for n in needles)
    if accounts["own"]:
        assert seen["uid"] == pwd.getpwnam(alice).pw_uid != 0
        assert not seen["secret_readable"] and not seen["data_dir_listable"]
        assert seen["found"] == []


AUTH_CACHE = 3  # ADIT_WB_AUTH_CACHE_SECONDS for the service below (default 60)


@ON_POSTGRES
@pytest.mark.parametrize("accounts", ["shared-account"], indirect=True)
@pytest.mark.parametrize("service_settings", [{"ADIT_WB_AUTH_CACHE_SECONDS": str(AUTH_CACHE)}])
def test_a_user_or_group_removed_at_the_hub_is_refused_by_the_service(
    shipped_hub: tuple[Hub, dict[str, str]],
    accounts: dict[str, Any],
    database_url: str,
    tmp_path: Path,
) -> None:
    hub, _ = shipped_hub
    alice, bob = accounts["alice"], accounts["bob"]
    database = Database(database_url)
    with database.session() as session:
        node_store.add_folder(session, FolderSpec("OUT", tmp_path))
    boss = sign_in(
        database, Identity("boss", IdentitySource.JUPYTERHUB, admin=True), embedded=False
    )
    boss.admin.grant("radiology", "OUT", destination=True)
    database.dispose()
    for user in (alice, bob):
        hub.set_groups(user, ["radiology"])
    # Hub tokens as a user's server holds them (scope: access to the workbench service).
    scopes = {"scopes": ["access:services!service=workbench"], "expires_in": 600}
    tokens = {u: hub.api("POST", f"/users/{u}/tokens", scopes)["token"] for u in (alice, bob)}

    def me(user: str) -> requests.Response:
        headers = {"Authorization": f"token {tokens[user]}"}
        return requests.get(f"{hub.url}/services/workbench/api/me", headers=headers, timeout=30)

    wait_until(lambda: me(bob).ok, 120, "the workbench service", proc=hub.proc, log=hub.log)
    for user in (alice, bob):
        answer = me(user).json()
        assert answer["user"] == user and answer["groups"] == ["radiology"], answer
        assert answer["nodes"] == {"OUT": ["destination"]}
    # Answers are cached now. Bob leaves the group, Alice's hub account is deleted.
    hub.set_groups(bob, [])
    hub.api("DELETE", f"/users/{alice}")

    def bob_lost_the_group() -> bool:
        answer = me(bob).json()
        return answer["groups"] == [] and answer["nodes"] == {}

    # Within the cache time (plus this machine's slowness), never more than the 60 s promised.
    wait_until(bob_lost_the_group, 60, "bob's group removal reaching the service")
    wait_until(lambda: me(alice).status_code == 401, 60, "alice's removal reaching the service")
    assert me(alice).json()["error"] == "Unauthenticated"
