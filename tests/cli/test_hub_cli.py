"""``adit-workbench hub start|status|stop`` on this machine: real PostgreSQL, Redis, sandbox
PACS and JupyterHub with the shipped configuration, the service and two workers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from adit_workbench.access import Access
from adit_workbench.cli import app
from adit_workbench.store import Database
from tests.servers._util import free_port, require

CLI = [sys.executable, "-m", "adit_workbench"]


@pytest.fixture
def state(configurable_http_proxy: str) -> Iterator[Path]:
    """A state folder outside pytest's (root-only) temp tree: postgres must traverse it."""
    if "serve" not in app.commands:
        pytest.skip("hub start runs `adit-workbench serve`, which lands with the service")
    for binary, hint in (("redis-server", "redis-server"), ("initdb", "postgresql")):
        if shutil.which(binary) is None and not list(Path("/usr/lib/postgresql").glob("*/bin")):
            require(binary, hint)
    folder = Path(tempfile.mkdtemp(prefix="wb-hubcli-"))
    yield folder
    subprocess.run([*CLI, "hub", "stop", "--state-dir", str(folder)], check=False, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


def _login(url: str, user: str, password: str) -> int:
    """Log in through the hub's form; the status after redirects (200 = logged in)."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{url}hub/login", timeout=30).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf})
    try:
        with opener.open(f"{url}hub/login", data=form.encode(), timeout=60) as response:
            return int(response.status) if "/hub/login" not in response.url else 403
    except urllib.error.HTTPError as exc:
        return exc.code


def test_hub_start_status_stop(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, service_port = free_port(), free_port()
    env_sandbox = {"ADIT_WB_SANDBOX_PORT": str(free_port())}
    monkeypatch.setenv("ADIT_WB_SANDBOX_PORT", env_sandbox["ADIT_WB_SANDBOX_PORT"])
    done = subprocess.run(
        [*CLI, "hub", "start", "--state-dir", str(state), "--port", str(port),
         "--service-port", str(service_port)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    url = f"http://127.0.0.1:{port}/"
    assert f"adit-workbench hub running at {url}" in done.stdout
    creds = json.loads((state / "credentials.json").read_text())
    assert (state / "credentials.json").stat().st_mode & 0o077 == 0
    assert f"password: {creds['login']}" in done.stdout
    for secret in ("owner", "service", "redis"):
        assert creds[secret] not in done.stdout + done.stderr

    status = subprocess.run([*CLI, "hub", "status", "--state-dir", str(state)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert status.returncode == 0
    for name in ("postgres", "redis", "jupyterhub"):
        assert f"{name}: running" in status.stdout

    assert _login(url, "alice", creds["login"]) == 200
    assert _login(url, "alice", "wrong") == 403

    # The admin and the two example groups, with their nodes and permissions.
    pg_port = json.loads((state / "ports.json").read_text())["postgres"]
    database = Database(
        f"postgresql+psycopg://adit_owner:{creds['owner']}@127.0.0.1:{pg_port}/workbench"
    )
    try:
        admin = Access(database, "admin")
        assert admin.is_admin
        groups = {g.name: g for g in admin.admin.groups()}
        assert set(groups["radiology"].permissions) >= {"selective_transfer", "batch_query"}
        assert groups["research-students"].permissions == ("explorer",)
        assert set(admin.visible_nodes()) == {"SANDBOX", "RESEARCH"}
    finally:
        database.dispose()

    stop = subprocess.run([*CLI, "hub", "stop", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert stop.returncode == 0 and "jupyterhub" in stop.stdout and "postgres" in stop.stdout
    after = subprocess.run([*CLI, "hub", "status", "--state-dir", str(state)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert after.returncode == 3 and "not running" in after.stdout
