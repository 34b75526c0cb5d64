"""JupyterHub for tests: a real hub (configurable-http-proxy from npm, SimpleLocalProcessSpawner).

configurable-http-proxy is installed on first use by this fixture with
``npm install --prefix <repo>/.cache/node configurable-http-proxy@5`` (project-local,
never global), and reused afterwards.

Fixtures:

* ``configurable_http_proxy`` (session): path of the ``configurable-http-proxy`` binary.
* ``start_jupyterhub`` (function): a factory ``start_jupyterhub(groups, environment)``
  returning a running :class:`Hub` on free loopback ports, whose users' servers run as
  the hub's user (no system accounts; root needs ``--allow-root``). Hubs are stopped at
  the end of the test. Tests drive it through the hub REST API with an admin service
  token and run code in a user's kernel with :meth:`Hub.run_in_kernel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.servers._util import free_port, require, run_coroutine, wait_until

REPO = Path(__file__).resolve().parents[2]
NODE_PREFIX = REPO / ".cache" / "node"
CHP_PACKAGE = "configurable-http-proxy@5"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def configurable_http_proxy() -> str:
    """The proxy binary, installed into <repo>/.cache/node on first use."""
    binary = NODE_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
    if not binary.exists():
        npm = require("npm", "Node.js and npm (Debian packages nodejs, npm)")
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund", CHP_PACKAGE],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0 or not binary.exists():
            pytest.fail(f"npm install {CHP_PACKAGE} failed:\n{done.stderr[-2000:]}", pytrace=False)
    return str(binary)


class Hub:
    """A running JupyterHub, driven through its REST API as an admin service."""

    def __init__(self, url: str, token: str, base: Path, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.api_url = f"{url}/hub/api"
        self.token = token
        self.base = base
        self.proc = proc
        self.log = base / "hub.log"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the hub API; returns the decoded JSON (None for an empty body)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def set_groups(self, user: str, groups: list[str]) -> None:
        """Make ``groups`` exactly the hub groups of ``user`` (creating missing groups)."""
        existing = {g["name"]: g for g in self.api("GET", "/groups")}
        for name, group in existing.items():
            if user in group["users"] and name not in groups:
                self.api("DELETE", f"/groups/{name}/users", {"users": [user]})
        for name in groups:
            if name not in existing:
                self.api("POST", f"/groups/{name}", {})
            self.api("POST", f"/groups/{name}/users", {"users": [user]})

    def spawn(self, user: str, timeout: float = 60) -> None:
        """Start the user's single-user server and wait until it answers."""
        self.api("POST", f"/users/{user}/server")

        def ready() -> bool:
            model = self.api("GET", f"/users/{user}")
            return bool(model.get("server")) and not model.get("pending")

        wait_until(ready, timeout, f"server of {user}", proc=self.proc, log=self.log)

    def run_in_kernel(
        self, user: str, code: str, *, kernel: str | None = None, timeout: float = 60
    ) -> tuple[str, str]:
        """Run ``code`` in a kernel of the user's server (a new one unless ``kernel``).

        Returns (stdout, kernel id); raises with the traceback if the code raised, or when
        the kernel is silent for ``timeout`` seconds.
        """
        if kernel is None:
            kernel = self._request("POST", f"/user/{user}/api/kernels", {"name": "python3"})["id"]
        ws = self.url.replace("http://", "ws://") + f"/user/{user}/api/kernels/{kernel}/channels"
        return run_coroutine(_execute(ws, self.token, code, timeout)), kernel

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        """Stop the hub (it stops the users' servers and its proxy), then its process group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        # Whatever the hub left behind in its own session (servers, kernels).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        # The proxy runs in a session of its own; a hub that exited at start-up (a
        # managed service too slow to answer) leaves it running, named in its pid file.
        pid_file = self.base / "jupyterhub-proxy.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.killpg(pid, signal.SIGKILL)


async def _execute(ws_url: str, token: str, code: str, timeout: float = 60) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    header = {
        "msg_id": msg_id,
        "msg_type": "execute_request",
        "username": "tests",
        "session": uuid.uuid4().hex,
        "version": "5.3",
        "date": "",
    }
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
    conn.write_message(json.dumps({**message, "channel": "shell", "buffers": []}))
    out: list[str] = []
    error = None
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            if raw is None:
                raise RuntimeError("the kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                error = "\n".join(msg["content"]["traceback"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        conn.close()
    if error is not None:
        raise RuntimeError(f"code raised in the kernel:\n{error}")
    return "".join(out)


_CONFIG = """\
import json, os
c = get_config()  # noqa: F821
settings = json.loads(os.environ["WB_TEST_HUB"])
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = settings["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings['proxy_api_port']}"
c.ConfigurableHTTPProxy.command = [settings["chp"]]
c.JupyterHub.db_url = "sqlite:///" + settings["base"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["base"] + "/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set(settings["users"])
c.JupyterHub.load_groups = {name: {"users": users} for name, users in settings["groups"].items()}
c.JupyterHub.services = [{"name": "wb-tests", "api_token": settings["token"]}]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["wb-tests"]}]
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = settings["base"] + "/homes/{username}"
c.Spawner.cmd = [settings["singleuser"]]
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.environment = settings["environment"]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.JupyterHub.cleanup_servers = True
"""


@pytest.fixture
def start_jupyterhub(configurable_http_proxy: str, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Factory: ``start_jupyterhub(groups={"g": ["alice"]}, environment={...})`` → Hub."""
    jupyterhub = require(str(VENV_BIN / "jupyterhub"), "jupyterhub in the project venv")
    hubs: list[Hub] = []

    def start(groups: Mapping[str, list[str]], environment: Mapping[str, str] | None = None) -> Hub:
        base = tmp_path / f"hub{len(hubs)}"
        users = sorted({u for members in groups.values() for u in members})
        for user in users:
            (base / "homes" / user).mkdir(parents=True)
        port = free_port()
        token = uuid.uuid4().hex
        env_for_servers = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            **(environment or {}),
        }
        settings = {
            "port": port,
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "chp": configurable_http_proxy,
            "base": str(base),
            "users": users,
            "groups": dict(groups),
            "token": token,
            "singleuser": str(VENV_BIN / "jupyterhub-singleuser"),
            "environment": env_for_servers,
        }
        (base / "jupyterhub_config.py").write_text(_CONFIG)
        env = {**os.environ, "WB_TEST_HUB": json.dumps(settings)}
        for var in [v for v in env if v.startswith("JUPYTERHUB_")]:
            del env[var]
        log = base / "hub.log"
        with log.open("wb") as log_fh:
            # A session of its own: SIGINT handling stays sane (recipe §4.9) and the
            # teardown can reap the proxy and servers by process group.
            proc = subprocess.Popen(
                [jupyterhub, "-f", str(base / "jupyterhub_config.py")],
                cwd=base,
                env=env,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        hub = Hub(f"http://127.0.0.1:{port}", token, base, proc)
        hubs.append(hub)
        wait_until(lambda: hub.api("GET", "/") is not None, 30, "JupyterHub", proc=proc, log=log)
        return hub

    yield start
    for hub in hubs:
        hub.stop()
