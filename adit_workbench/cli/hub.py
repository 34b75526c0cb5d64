"""``adit-workbench hub start|stop|status``: the multi-user topology on one machine.

``start`` brings up, in a state folder of its own (default ``<data dir>/hub``):

* PostgreSQL (``initdb`` on 127.0.0.1, a free port) with two roles: ``adit_owner`` runs
  the migrations, ``adit_service`` (granted by ``db grant-service-role``) is what the
  service and the workers use, so the audit log is insert-only for them;
* Redis on 127.0.0.1 with a password (in a config file, not on the command line);
* the sandbox PACS (synthetic patients, node ``SANDBOX``) and a folder node ``RESEARCH``;
* JupyterHub with the shipped ``jupyter_config/jupyterhub_config.py``, which starts the
  workbench service (``adit-workbench serve``) and two workers as managed services and
  gives user servers nothing but the service URL; Voilà is served by every user server;
* an admin (``admin``, hub and workbench admin) and two example groups, ``radiology``
  (``alice``: transfers from SANDBOX to RESEARCH) and ``research-students`` (``bob``:
  explorer), logging in with a generated demo password.

Passwords are generated once and kept in ``credentials.json`` (mode 0600). This is a
demonstration on one account: user servers run as the same OS account as the service
(SimpleLocalProcessSpawner). ``deploy/README.md`` says how to separate them (OS users,
file modes, pg_hba, firewall) and how to run the same topology on Kubernetes.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigurationError, InputError
from . import app
from ._common import service_host_only

__all__ = ["hub_group"]

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "jupyter_config" / "jupyterhub_config.py"
OWNER, SERVICE_ROLE, DATABASE = "adit_owner", "adit_service", "workbench"
USERS = {"admin": None, "alice": "radiology", "bob": "research-students"}
_START_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state_dir(state_dir: Path | None) -> Path:
    from ..config import get_settings

    return (state_dir or get_settings().data_dir / "hub").expanduser().absolute()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def _binary(name: str, hint: str, *candidates: Path) -> str:
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(f"{name} not found: install {hint}")
    return found


def _as_postgres(cmd: list[str], folder: Path) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` account."""
    if os.geteuid() != 0:
        return cmd
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigurationError("running as root but there is no 'postgres' account") from None
    os.chown(folder, account.pw_uid, account.pw_gid)
    setpriv = _binary("setpriv", "util-linux")
    return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
            "--clear-groups", "--", *cmd]  # fmt: skip


def _wait(check: Any, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise ConfigurationError(f"{what} did not start (log {log}):\n{tail}")


def _spawn(cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )


def _start_postgres(state: Path, creds: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    bin_dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    initdb = _binary("initdb", "the Debian package postgresql", *(d / "initdb" for d in bin_dirs))
    postgres = str(Path(initdb).with_name("postgres"))
    folder = state / "postgres"
    data = folder / "data"
    if not data.exists():
        folder.mkdir(mode=0o700, exist_ok=True)
        pwfile = folder / "pw"
        _write_private(pwfile, creds["owner"] + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        # Host connections need a password (scram); the socket stays inside this folder.
        cmd = [initdb, "-D", str(data), "-U", OWNER, f"--pwfile={pwfile}",
               "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8",
               "--no-instructions"]  # fmt: skip
        done = subprocess.run(
            _as_postgres(cmd, folder), capture_output=True, text=True, check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode != 0:
            raise ConfigurationError(f"initdb failed: {done.stderr[-1500:]}")
    cmd = [postgres, "-D", str(data), "-p", str(port), "-k", str(folder),
           "-c", "listen_addresses=127.0.0.1"]  # fmt: skip
    proc = _spawn(_as_postgres(cmd, folder), state / "logs" / "postgres.log")

    def ready() -> bool:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user=OWNER, password=creds["owner"],
                             dbname="postgres", connect_timeout=2):  # fmt: skip
            return True

    _wait(ready, "PostgreSQL", proc, state / "logs" / "postgres.log")
    return proc


def _prepare_database(creds: dict[str, str], port: int) -> tuple[str, str]:
    """Create the database and the service role; migrate as owner; grant the service."""
    import psycopg

    from ..store import Database
    from ..store.roles import grant_service_role

    with psycopg.connect(host="127.0.0.1", port=port, user=OWNER, password=creds["owner"],
                         dbname="postgres", autocommit=True) as conn:  # fmt: skip
        if (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
            is None
        ):
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER}")
        if (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [SERVICE_ROLE]).fetchone()
            is None
        ):
            # The password is our own hex token: safe inside the statement.
            conn.execute(f"CREATE ROLE {SERVICE_ROLE} LOGIN PASSWORD '{creds['service']}'")
    owner_url = f"postgresql+psycopg://{OWNER}:{creds['owner']}@127.0.0.1:{port}/{DATABASE}"
    service_url = (
        f"postgresql+psycopg://{SERVICE_ROLE}:{creds['service']}@127.0.0.1:{port}/{DATABASE}"
    )
    database = Database(owner_url)
    try:
        database.upgrade()
        grant_service_role(database, SERVICE_ROLE)
    finally:
        database.dispose()
    return owner_url, service_url


def _start_redis(state: Path, creds: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    redis = _binary("redis-server", "the Debian package redis-server")
    folder = state / "redis"
    folder.mkdir(mode=0o700, exist_ok=True)
    conf = folder / "redis.conf"
    _write_private(
        conf,
        f'bind 127.0.0.1\nport {port}\nrequirepass {creds["redis"]}\nsave ""\n'
        f"appendonly no\ndir {folder}\nprotected-mode yes\n",
    )
    proc = _spawn([redis, str(conf)], state / "logs" / "redis.log")

    def ready() -> bool:
        from redis import Redis

        return bool(Redis(host="127.0.0.1", port=port, password=creds["redis"]).ping())

    _wait(ready, "Redis", proc, state / "logs" / "redis.log")
    return proc


def _bootstrap(settings: Any, state: Path) -> None:
    """Admin, example groups, the sandbox PACS and a research folder, as the operator."""
    from ..access import operator_identity, sign_in
    from ..store import open_database
    from ..workbench import Workbench

    database = open_database(settings)
    try:
        admin = sign_in(database, operator_identity("admin"), embedded=False)
        wb = Workbench(settings, database, admin)
        wb.start_sandbox()
        if "RESEARCH" not in {s.name for s in wb.node_specs()}:
            (state / "research").mkdir(exist_ok=True)
            wb.add_folder("RESEARCH", state / "research")
        manage = admin.admin
        manage.grant("radiology", "SANDBOX", source=True)
        manage.grant("radiology", "RESEARCH", destination=True)
        for permission in ("explorer", "selective_transfer", "batch_query", "batch_transfer"):
            manage.add_permission("radiology", permission)
        manage.grant("research-students", "SANDBOX", source=True)
        manage.add_permission("research-students", "explorer")
        wb.close()
    finally:
        database.dispose()


def _proxy_command() -> str:
    local = REPO / ".cache" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
    found = shutil.which("configurable-http-proxy") or (str(local) if local.exists() else None)
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigurationError(
            "configurable-http-proxy needs Node.js and npm (apt-get install npm)"
        )
    subprocess.run(
        [npm, "install", "--prefix", str(local.parents[2]), "--no-audit", "--no-fund",
         "configurable-http-proxy@5"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return str(local)


_HUB_CONFIG = """\
# Written by `adit-workbench hub start`: the shipped configuration plus the demo's login.
import os
c = get_config()  # noqa: F821
load_subconfig({shipped!r})  # noqa: F821
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = os.environ["ADIT_WB_HUB_DEMO_PASSWORD"]
c.Authenticator.allowed_users = {users!r}
c.JupyterHub.load_groups = {groups!r}
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.cookie_secret_file = {cookie!r}
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
"""


def _start_jupyterhub(
    state: Path, settings_env: dict[str, str], creds: dict[str, str], port: int,
    service_port: int, workers: int,
) -> subprocess.Popen[bytes]:  # fmt: skip
    if not SHIPPED_CONFIG.exists():
        raise ConfigurationError(f"{SHIPPED_CONFIG} is missing: run from a clone of the project")
    folder = state / "jupyterhub"
    folder.mkdir(mode=0o700, exist_ok=True)
    for user in USERS:
        (state / "homes" / user).mkdir(parents=True, exist_ok=True)
    groups = {"radiology": ["alice"], "research-students": ["bob"], "dashboard-users": []}
    config = folder / "jupyterhub_config.py"
    config.write_text(
        _HUB_CONFIG.format(
            shipped=str(SHIPPED_CONFIG), users=set(USERS),
            groups={g: {"users": u} for g, u in groups.items()}, proxy=_proxy_command(),
            cookie=str(folder / "cookie_secret"), homes=str(state / "homes"),
        )
    )  # fmt: skip
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADIT_WB_", "JUPYTERHUB_"))}
    env.update(
        settings_env,
        PATH=f"{venv_bin}:{os.environ.get('PATH', '')}",
        JUPYTERHUB_DB_URL=f"sqlite:///{folder / 'jupyterhub.sqlite'}",
        ADIT_WB_HUB_URL=f"http://127.0.0.1:{port}",
        ADIT_WB_HUB_SERVICE_PORT=str(service_port),
        ADIT_WB_HUB_WORKERS=str(workers),
        ADIT_WB_HUB_SPAWNER="simple",
        ADIT_WB_HUB_DEMO_PASSWORD=creds["login"],
    )
    log = state / "logs" / "jupyterhub.log"
    proc = _spawn([str(venv_bin / "jupyterhub"), "-f", str(config)], log, cwd=folder, env=env)

    import urllib.request  # only here: it costs a tenth of a second of every CLI start

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hub/api", timeout=2) as response:
            return bool(response.status == 200)

    _wait(ready, "JupyterHub", proc, log)
    return proc


@app.group("hub")
def hub_group() -> None:
    """The whole multi-user set-up on this machine (PostgreSQL, Redis, JupyterHub, …)."""


_STATE = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where everything lives (default: <data dir>/hub).",
)  # fmt: skip


@hub_group.command("start")
@_STATE
@click.option("--port", type=int, default=8000, show_default=True, help="JupyterHub's port.")
@click.option("--service-port", type=int, default=10102, show_default=True,
              help="The workbench service's port (127.0.0.1).")  # fmt: skip
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
@service_host_only
def start_cmd(state_dir: Path | None, port: int, service_port: int, workers: int) -> None:
    """Start PostgreSQL, Redis, the sandbox PACS, JupyterHub, the service and workers."""
    from ..config import Settings

    state = _state_dir(state_dir)
    pids = _read_json(state / "pids.json")
    if any(_alive(pid) for pid in pids.values()):
        raise InputError(f"already running from {state}: adit-workbench hub stop first")
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o711 if os.geteuid() == 0 else 0o700)  # postgres must traverse it
    (state / "logs").mkdir(mode=0o700, exist_ok=True)
    import secrets

    creds_file = state / "credentials.json"
    creds = _read_json(creds_file) or {
        name: secrets.token_hex(16) for name in ("owner", "service", "redis", "login")
    }
    _write_private(creds_file, json.dumps(creds, indent=1))
    pg_port, redis_port = _free_port(), _free_port()
    ports = {"jupyterhub": port, "service": service_port, "postgres": pg_port, "redis": redis_port}
    _write_private(state / "ports.json", json.dumps(ports))
    started: dict[str, int] = {}
    try:
        started["postgres"] = _start_postgres(state, creds, pg_port).pid
        _write_private(state / "pids.json", json.dumps(started))
        _, service_url = _prepare_database(creds, pg_port)
        started["redis"] = _start_redis(state, creds, redis_port).pid
        _write_private(state / "pids.json", json.dumps(started))
        redis_url = f"redis://:{creds['redis']}@127.0.0.1:{redis_port}/0"
        service_data = state / "service"
        settings = Settings(data_dir=service_data, database_url=service_url, redis_url=redis_url)
        _bootstrap(settings, state)
        settings_env = {
            "ADIT_WB_DATABASE_URL": service_url,
            "ADIT_WB_REDIS_URL": redis_url,
            "ADIT_WB_DATA_DIR": str(service_data),
        }
        started["jupyterhub"] = _start_jupyterhub(
            state, settings_env, creds, port, service_port, workers
        ).pid
        _write_private(state / "pids.json", json.dumps(started))
    except BaseException:
        _stop(state)
        raise
    click.echo(f"adit-workbench hub running at http://127.0.0.1:{port}/")
    click.echo(f"  log in as admin (hub and workbench admin), alice (radiology) or bob "
               f"(research-students), password: {creds['login']}")  # fmt: skip
    click.echo("  in a notebook: import adit_workbench as aw; wb = aw.connect()")
    click.echo(f"  everything lives in {state} (logs/, credentials.json)")
    click.echo("  demo only: user servers run as your OS account; see deploy/README.md")
    click.echo("  stop with: adit-workbench hub stop")


def _stop(state: Path) -> list[str]:
    """Stop what ``start`` started (by the pids it recorded), newest first."""
    from ..config import Settings
    from ..sandbox import process as sandbox

    stopped = []
    pids = _read_json(state / "pids.json")
    for name in ("jupyterhub", "redis", "postgres"):
        pid = pids.get(name)
        if pid is None or not _alive(pid):
            continue
        # The hub stops its services and servers itself; PostgreSQL: fast shutdown.
        os.kill(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # whatever it left in its own session
        stopped.append(name)
        if name == "jupyterhub":
            service_data = state / "service"
            if service_data.exists() and sandbox.stop_background(Settings(data_dir=service_data)):
                stopped.append("sandbox")
    (state / "pids.json").unlink(missing_ok=True)
    return stopped


@hub_group.command("stop")
@_STATE
@service_host_only
def stop_cmd(state_dir: Path | None) -> None:
    """Stop everything ``hub start`` started (the state and its data stay)."""
    stopped = _stop(_state_dir(state_dir))
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@hub_group.command("status")
@_STATE
@service_host_only
def status_cmd(state_dir: Path | None) -> None:
    """Say which of the hub's processes run."""
    pids = _read_json(_state_dir(state_dir) / "pids.json")
    if not pids:
        click.echo("not running")
        raise click.exceptions.Exit(3)
    ports = _read_json(_state_dir(state_dir) / "ports.json")
    for name, pid in pids.items():
        where = f", 127.0.0.1:{ports[name]}" if name in ports else ""
        click.echo(f"{name}: {'running' if _alive(pid) else 'stopped'} (pid {pid}{where})")
