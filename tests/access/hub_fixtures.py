"""The shipped hub configuration under a real JupyterHub, for the boundary and attack tests.

Two set-ups of the same config (``jupyter_config/jupyterhub_config.py``):

* ``own-accounts``: user servers run as their own unprivileged OS accounts and the
  service as its own (the deployment ``deploy/README.md`` describes). Needs root (to
  create the accounts): skipped with a message otherwise, failing when ``CI=true``.
  Accounts are removed after. The hub, the service and the user servers run from a
  Python every account may execute (``shared_python``: the test venv's own interpreter
  is under /root, mode 0700).
* ``shared-account``: every process runs as the hub's account (SimpleLocalProcessSpawner,
  demos): the environment boundary alone, which runs everywhere.

:func:`os_accounts` and :func:`shipped_hub` are context managers, so that a test module
can hold one hub for all its tests (a user server takes 30-60 s to start on a loaded
machine) and another can start one per test; ``tests/access/test_hub_boundary.py`` wraps
them in function-scoped fixtures, ``tests/access/test_kernel_attacks.py`` in
module-scoped ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adit_workbench.cli import app as cli_app
from adit_workbench.store import Database
from tests.servers._util import free_port, require, wait_until
from tests.servers.jupyterhub import VENV_BIN, Hub

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "jupyter_config" / "jupyterhub_config.py"

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

#: Kernel code (``.format(args=(secret, data_dir, needles, roots))``): what the kernel's
#: user can read, as JSON on the last line (uid, environment, credential hits).
KERNEL_SCAN = """\
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


@contextlib.contextmanager
def os_accounts(kind: str, shared: tuple[Path, Path] | None = None) -> Iterator[dict[str, Any]]:
    """Who runs what: OS accounts for the service and two users, or the hub's account.

    ``kind`` is ``own-accounts`` (then ``shared`` is the ``shared_python`` fixture's
    value: the ``bin`` dir every account may run and the folder for ``PYTHONPATH``) or
    ``shared-account``. Yields ``base`` (a 0755 temp dir), ``service`` (a ``pwd`` entry),
    ``alice``, ``bob``, ``own``, ``bin``, ``pythonpath`` and ``since`` (when it began).
    """
    since = time.time() - 1  # what the kernel scan reads in /tmp was written after this
    base = Path(tempfile.mkdtemp(prefix="wb-hub-"))
    os.chmod(base, 0o755)
    me = pwd.getpwuid(os.geteuid())
    if kind == "shared-account":
        for name in ("alice", "bob"):
            (base / "homes" / name).mkdir(parents=True)
        try:
            yield {
                "base": base, "service": me, "alice": "alice", "bob": "bob", "own": False,
                "bin": VENV_BIN, "pythonpath": REPO, "since": since,
            }  # fmt: skip
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    assert shared is not None, "own accounts run the shared Python (fixture shared_python)"
    bin_dir, pythonpath = shared
    useradd, userdel = require("useradd", "passwd"), require("userdel", "passwd")
    tag = f"wb{os.getpid() % 100000}{uuid.uuid4().hex[:3]}"
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


@contextlib.contextmanager
def shipped_hub(
    accounts: dict[str, Any],
    configurable_http_proxy: str,
    database_url: str,
    redis_url: str,
    service_settings: dict[str, str] | None = None,
) -> Iterator[tuple[Hub, dict[str, str]]]:
    """The shipped config under a real hub (root), the service as its own account.

    Yields the hub and the trusted side's settings (``ADIT_WB_*``, and ``secret``: the
    path of the secret file).
    """
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
        **(service_settings or {}),
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


def processes_of(uid: int) -> list[tuple[str, dict[str, str]]]:
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
