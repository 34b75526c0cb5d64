"""The shipped hub configuration under a real JupyterHub: user servers hold no database
URL, Redis URL or secret; the workbench service and two workers hold them.

Two set-ups of the same config:

* ``own-accounts``: user servers run as their own unprivileged OS accounts and the
  service as its own (the deployment ``deploy/README.md`` describes); a user's kernel
  cannot read the secret, and no file or process environment it can read holds a
  credential. Needs root (to create the accounts): skipped with a message otherwise,
  failing when ``CI=true``. Accounts are removed after. The hub, the service and the
  user servers run from a Python every account may execute (``shared_python``: the test
  venv's own interpreter is under /root, mode 0700).
* ``shared-account``: every process runs as the hub's account (SimpleLocalProcessSpawner,
  demos): the environment boundary alone, which runs everywhere.

And the service's answer to a hub change: a user deleted at the hub, or removed from a
group, is refused (or loses the group's node) within ``ADIT_WB_AUTH_CACHE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.cli import app as cli_app
from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from tests.servers._util import free_port, require, wait_until
from tests.servers.jupyterhub import VENV_BIN, Hub
from tests.servers.shared_python import shared_python  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "jupyter_config" / "jupyterhub_config.py"

ON_POSTGRES = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)

# Seconds a user's server may take to start (and a kernel to scan what its user can
# read). Its imports (JupyterLab, Voilà, LSP: ~1,400 modules) took 30-40 s on a loaded
# 2-core machine, as root and as an unprivileged account alike, close to the spawner's
# 60 s: that, not the accounts, is why servers once "did not answer the hub in time".
SERVER_START = 180

# The shipped file first, then only what a test hub must change (ports, the login, an
# admin token for the test). A stand-in answers for the service until `serve` exists.
_CONFIG = """\
import json, os
c = get_config()  # noqa: F821
load_subconfig({shipped!r})  # noqa: F821
t = json.loads(os.environ["WB_TEST_HUB"])
c.JupyterHub.hub_port = t["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{{t['proxy_api_port']}}"
c.ConfigurableHTTPProxy.command = [t["chp"]]
c.JupyterHub.cookie_secret_file = t["base"] + "/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set(t["users"])
c.JupyterHub.services.append({{"name": "wb-tests", "api_token": t["token"]}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["wb-tests"]}})
if t["stand_in"]:
    c.JupyterHub.services[0]["command"] = t["stand_in"]
c.Spawner.start_timeout = c.Spawner.http_timeout = t["server_start"]
if t["homes"]:
    c.SimpleLocalProcessSpawner.home_dir_template = t["homes"] + "/{{username}}"
"""

_STAND_IN = """\
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

_KERNEL = """\
import json, os, stat
secret, data_dir, needles, roots = {args!r}
found = []
def check(path, since=0):
    try:
        # Regular files only: opening a FIFO some other test left in /tmp blocks forever.
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_mtime < since:
            return
        with open(path, "rb") as fh:
            blob = fh.read(4_000_000)
    except OSError:
        return
    found.extend(f"{{path}}: {{n}}" for n in needles if n.encode() in blob)
for root, since in roots:
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        for name in filenames:
            check(os.path.join(dirpath, name), since)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        check(f"/proc/{{pid}}/environ")
        check(f"/proc/{{pid}}/cmdline")
def readable(path):
    try:
        open(path, "rb").close()
        return True
    except OSError:
        return False
print(json.dumps({{
    "uid": os.getuid(),
    "env": dict(os.environ),
    "secret_readable": readable(secret),
    "data_dir_listable": os.access(data_dir, os.R_OK | os.X_OK),
    "found": found,
}}))
"""


@pytest.fixture(params=["own-accounts", "shared-account"])
def accounts(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Who runs what: OS accounts for the service and two users, or the hub's account.

    ``bin`` is where the hub's Python is: for own accounts, the shared copy every account
    may run (``tests/servers/shared_python.py``; it skips without root, fails in CI).
    """
    if request.param == "own-accounts":
        bin_dir, pythonpath = request.getfixturevalue("shared_python")
    since = time.time() - 1  # what the kernel scan reads in /tmp was written after this
    base = Path(tempfile.mkdtemp(prefix="wb-hub-"))
    os.chmod(base, 0o755)
    me = pwd.getpwuid(os.geteuid())
    if request.param == "shared-account":
        for name in ("alice", "bob"):
            (base / "homes" / name).mkdir(parents=True)
        yield {
            "base": base, "service": me, "alice": "alice", "bob": "bob", "own": False,
            "bin": VENV_BIN, "pythonpath": REPO, "since": since,
        }  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
        return
    useradd, userdel = require("useradd", "passwd"), require("userdel", "passwd")
    tag = f"wb{os.getpid() % 100000}"
    names = {"service": f"{tag}svc", "alice": f"{tag}alice", "bob": f"{tag}bob"}
    made: list[str] = []
    try:
        for name in names.values():
            home = base / "homes" / name
            subprocess.run(
                [useradd, "--home-dir", str(home), "--create-home", "--shell",
                 "/usr/sbin/nologin", "--user-group", name],
                check=True, capture_output=True,
            )  # fmt: skip
            made.append(name)
            os.chmod(home, 0o700)
        yield {
            "base": base,
            "service": pwd.getpwnam(names["service"]),
            "alice": names["alice"],
            "bob": names["bob"],
            "own": True,
            "bin": bin_dir,
            "pythonpath": pythonpath,
            "since": since,
        }
    finally:
        for name in made:
            subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
            subprocess.run([userdel, name], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


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
    """The shipped config under a real hub (root), the service as its own account."""
    Database(database_url).upgrade()  # the owner migrates before the service starts
    base: Path = accounts["base"]
    hub_dir = base / "hub"
    hub_dir.mkdir(mode=0o700)
    data_dir = base / "service-data"
    port, service_port = free_port(), free_port()
    token = uuid.uuid4().hex
    has_serve = "serve" in cli_app.commands
    stand_in = (
        None if has_serve else [str(accounts["bin"] / "python"), "-c", _STAND_IN, str(service_port)]
    )  # the real `adit-workbench serve` lands with the service
    test = {
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "chp": configurable_http_proxy,
        "base": str(hub_dir),
        "users": [accounts["alice"], accounts["bob"]],
        "token": token,
        "server_start": SERVER_START,
        "stand_in": stand_in,
        "homes": None if accounts["own"] else str(base / "homes"),
    }
    settings = {
        "ADIT_WB_DATABASE_URL": database_url,
        "ADIT_WB_REDIS_URL": redis_url,
        "ADIT_WB_DATA_DIR": str(data_dir),
        **service_settings,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "ADIT_WB_"))}
    env.update(
        settings,
        WB_TEST_HUB=json.dumps(test),
        PYTHONPATH=str(accounts["pythonpath"]),
        PATH=f"{accounts['bin']}:{os.environ.get('PATH', '')}",
        JUPYTERHUB_DB_URL=f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}",
        ADIT_WB_HUB_URL=f"http://127.0.0.1:{port}",
        ADIT_WB_HUB_SERVICE_PORT=str(service_port),
        ADIT_WB_HUB_SPAWNER="localprocess" if accounts["own"] else "simple",
    )
    if accounts["own"]:
        env["ADIT_WB_HUB_SERVICE_USER"] = accounts["service"].pw_name
    config = hub_dir / "jupyterhub_config.py"
    config.write_text(_CONFIG.format(shipped=str(SHIPPED)))
    log = hub_dir / "hub.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [str(accounts["bin"] / "jupyterhub"), "-f", str(config)],
            cwd=hub_dir, env=env, stdout=log_fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    hub = Hub(f"http://127.0.0.1:{port}", token, hub_dir, proc)
    try:
        wait_until(
            lambda: hub.api("GET", "/") is not None, SERVER_START, "JupyterHub", proc=proc, log=log
        )
        yield hub, {**settings, "secret": str(data_dir / "secret.key")}
    finally:
        hub.stop()


def _processes_of(uid: int) -> list[tuple[str, dict[str, str]]]:
    """(command line, environment) of every process running as ``uid`` (we are root)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            environ = dict(e.decode().split("=", 1) for e in raw if b"=" in e)
            found.append((cmdline, environ))
    return found


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
        procs = _processes_of(service.pw_uid)
        workers = [c for c, e in procs if " worker --name workbench-worker-" in c]
        with_secret = [e for _, e in procs if e.get("ADIT_WB_SECRET_FILE") == str(secret)]
        return len(workers) == 2 and len(with_secret) >= 3

    wait_until(trusted_side, 60, "the workbench service and two workers", proc=hub.proc)
    for _, environ in _processes_of(service.pw_uid):
        if environ.get("ADIT_WB_SECRET_FILE") == str(secret):
            assert environ["ADIT_WB_DATABASE_URL"] == settings["ADIT_WB_DATABASE_URL"]
            assert environ["ADIT_WB_REDIS_URL"] == settings["ADIT_WB_REDIS_URL"]

    # An ordinary user's kernel: only the service URL (and, on its own account, nothing
    # to read: not the secret, no file or process environment holding a credential).
    hub.spawn(alice, timeout=SERVER_START)
    needles = [
        settings["ADIT_WB_DATABASE_URL"],
        "wb-test-pw",  # the database password (tests/servers/postgres.py)
        settings["ADIT_WB_REDIS_URL"],
        secret.read_text().strip(),
    ]
    # Everything under the test's folder (hub, homes, service data), and what was written
    # to /tmp since it exists: older files there (the shared interpreter, other checkouts
    # of this repository, whose test sources name the fixture's password) predate the hub.
    roots = [(str(accounts["base"]), 0), ("/tmp", accounts["since"])] if accounts["own"] else []
    args = (str(secret), str(secret.parent), needles, roots)
    code = _KERNEL.format(args=args)
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
