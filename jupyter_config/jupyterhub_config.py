"""JupyterHub configuration for a department running adit_workbench.

The trust boundary (docs: ``deploy/README.md``): a user's server runs arbitrary code, so
it gets *only the service URL*. The workbench service (``adit-workbench serve``) and its
workers (``adit-workbench worker``) are hub-managed services; they alone receive the
database and Redis URLs, the secret file and every other ``ADIT_WB_*`` setting, and run
under the service's own OS account when ``ADIT_WB_HUB_SERVICE_USER`` names one. Kernels,
Voilà dashboards and scripts in user servers call the service with their server's hub
token (scope ``access:services!service=workbench``, granted to every user below).

Start it as root (so that each user's server runs as that user's own OS account, and the
service as its own) in a directory of its own::

    export JUPYTERHUB_DB_URL=postgresql+psycopg://jhub:SECRET@db.example.org/jupyterhub
    export ADIT_WB_DATABASE_URL=postgresql+psycopg://wb_service:SECRET@db.example.org/workbench
    export ADIT_WB_REDIS_URL=redis://:SECRET@127.0.0.1:6379/0
    export ADIT_WB_DATA_DIR=/srv/adit-workbench ADIT_WB_HUB_SERVICE_USER=adit-wb
    jupyterhub -f jupyter_config/jupyterhub_config.py

Environment read here (all optional):

``JUPYTERHUB_DB_URL``
    The hub's own database; PostgreSQL for production. Default: ``sqlite:///jupyterhub.sqlite``.
``ADIT_WB_*`` (settings)
    Passed to the service and the workers only, never to a user's server.
``ADIT_WB_HUB_URL``
    Public URL of the hub (default ``http://127.0.0.1:8000``).
``ADIT_WB_HUB_SERVICE_PORT``
    Port of the workbench service on 127.0.0.1 (default 10102).
``ADIT_WB_HUB_SERVICE_URL``
    The URL user servers use for the service (default: the hub's public URL +
    ``/services/workbench/``, i.e. through the hub's proxy).
``ADIT_WB_HUB_WORKERS``
    Number of ``adit-workbench worker`` services (default 2; 0 with no Redis).
``ADIT_WB_HUB_SERVICE_USER``
    OS account that runs the service and the workers and owns the data dir and the
    secret file (mode 0600). Needs a hub started as root. Default: the hub's own account.
``ADIT_WB_HUB_DASHBOARDS_DIR``
    The folder of Voilà dashboards that members of ``dashboard-users`` see: their server
    is rooted there and opens ``index.ipynb``, the list of the dashboards each may use.
    Default: ``dashboards/`` of this checkout (beside ``jupyter_config/``).
``ADIT_WB_HUB_AUTHENTICATOR`` / ``ADIT_WB_HUB_SPAWNER``
    Default ``pam`` and ``localprocess`` (one OS account per user). ``simple``
    (SimpleLocalProcessSpawner) runs every server as the hub's own account: demos only,
    as every user could then read the service's files.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import sys
from pathlib import Path

from jupyterhub.services.service import Service

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (injected by JupyterHub)

VENV_BIN = Path(sys.executable).parent  # the environment jupyterhub runs from
env = os.environ.get
SERVICE = "workbench"

# -- network --------------------------------------------------------------------------
c.JupyterHub.bind_url = env("ADIT_WB_HUB_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_ip = "127.0.0.1"

# -- the hub's own database -----------------------------------------------------------
# SQLAlchemy 2.0 reads a bare postgresql:// as psycopg2, which we do not ship.
db_url = env("JUPYTERHUB_DB_URL", "sqlite:///jupyterhub.sqlite")
if db_url.startswith("postgresql://"):
    db_url = "postgresql+psycopg://" + db_url.removeprefix("postgresql://")
c.JupyterHub.db_url = db_url

# -- who may log in ------------------------------------------------------------------
c.JupyterHub.authenticator_class = env("ADIT_WB_HUB_AUTHENTICATOR", "pam")
c.Authenticator.admin_users = {"admin"}  # hub admins are workbench admins too
c.Authenticator.allow_existing_users = True  # users added on the admin page may log in

# Example groups. Hub groups become workbench groups when their members call the
# service; grant them nodes and permissions through the service (an admin's notebook,
# or `adit-workbench access …` with ADIT_WB_SERVICE_URL and an admin's API token).
c.JupyterHub.load_groups = {
    "radiology": {"users": []},
    "research-students": {"users": []},
    # Members start in the dashboards (Voilà) instead of JupyterLab; see pre_spawn_hook.
    "dashboard-users": {"users": []},
}

# -- the workbench service and its workers (the trusted side) ---------------------------
service_port = int(env("ADIT_WB_HUB_SERVICE_PORT", "10102"))
service_user = env("ADIT_WB_HUB_SERVICE_USER") or None
data_dir = Path(env("ADIT_WB_DATA_DIR") or Path.cwd() / "adit-workbench-data").absolute()
secret_file = Path(env("ADIT_WB_SECRET_FILE") or data_dir / "secret.key").absolute()


def _prepare_private_files(user: str | None) -> None:
    """The data dir (0700) and the secret file (0600) exist and belong to the service.

    Done here, before any user's server starts, so that the secret is never created
    with another owner or a looser mode by whichever process happens to use it first.
    """
    uid = gid = -1
    if user is not None:
        account = pwd.getpwnam(user)
        uid, gid = account.pw_uid, account.pw_gid
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not secret_file.exists():
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    for path, mode in ((data_dir, 0o700), (secret_file.parent, 0o700), (secret_file, 0o600)):
        os.chmod(path, mode)
        if os.geteuid() == 0 and uid != -1:
            os.chown(path, uid, gid)


_prepare_private_files(service_user)

# Everything the trusted side needs; nothing of it reaches a user's server.
service_env = {k: v for k, v in os.environ.items() if k.startswith("ADIT_WB_")}
service_env = {k: v for k, v in service_env.items() if not k.startswith("ADIT_WB_HUB_")}
service_env.update(
    ADIT_WB_DATA_DIR=str(data_dir),
    ADIT_WB_SECRET_FILE=str(secret_file),
    PATH=f"{VENV_BIN}:{env('PATH', '/usr/bin:/bin')}",
)
for keep in ("PYTHONPATH", "LANG", "LC_ALL", "TZ"):
    if env(keep):
        service_env[keep] = env(keep, "")
if service_user is not None:
    service_env["HOME"] = pwd.getpwnam(service_user).pw_dir

ADIT_WORKBENCH = shutil.which("adit-workbench", path=str(VENV_BIN)) or str(
    VENV_BIN / "adit-workbench"
)
managed: dict[str, object] = {"environment": service_env, "cwd": str(data_dir)}
if service_user is not None:
    managed["user"] = service_user

c.JupyterHub.services = [
    {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{service_port}",
        "command": [ADIT_WORKBENCH, "serve", "--host", "127.0.0.1", "--port", str(service_port)],
        "oauth_no_confirm": True,  # browsers log in to the service with their hub login
        "display": True,
        **managed,
    }
]
# The hub exits when its managed service does not answer within the service's timeout
# (30 s by default, JupyterHub >= 6). `serve` imports FastAPI, pandas and pydicom first:
# 30-40 s on a loaded 2-core machine, like a user's server (spawner timeouts below).
if "timeout" in Service.class_trait_names():
    c.JupyterHub.services[0]["timeout"] = 120
workers = int(env("ADIT_WB_HUB_WORKERS", "2" if env("ADIT_WB_REDIS_URL") else "0"))
for number in range(1, workers + 1):
    c.JupyterHub.services.append(
        {
            "name": f"{SERVICE}-worker-{number}",
            "command": [ADIT_WORKBENCH, "worker", "--name", f"{SERVICE}-worker-{number}"],
            **managed,
        }
    )

# Every user may call the workbench service (what they may do there is decided by the
# service from their workbench groups and permissions).
c.JupyterHub.load_roles = [
    {
        "name": "user",
        "description": "Default user role, plus access to the workbench service",
        "scopes": ["self", f"access:services!service={SERVICE}"],
    },
]

# -- single-user servers (the untrusted side) ------------------------------------------
c.JupyterHub.spawner_class = env("ADIT_WB_HUB_SPAWNER", "localprocess")
# An absolute path: the hub's PATH lacks the venv's bin/ unless it was activated.
c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
if os.geteuid() == 0 and c.JupyterHub.spawner_class == "simple":
    c.Spawner.args = ["--allow-root"]  # servers run as the hub's user (root) here
c.Spawner.default_url = "/lab"
# A server imports ~1,400 modules (JupyterLab, Voilà, LSP) before it answers: seconds on
# an idle machine, 30-40 s on a loaded 2-core one. A server cut off at 60 s is lost work.
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
# Of the hub's own environment (which holds the settings above) only these pass on.
c.Spawner.env_keep = ["PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ", "JUPYTERHUB_SINGLEUSER_APP"]
public_url = str(c.JupyterHub.bind_url).rstrip("/")
# Only where the service is: aw.connect() there returns the workbench backed by it.
c.Spawner.environment = {
    "ADIT_WB_SERVICE_URL": env("ADIT_WB_HUB_SERVICE_URL", f"{public_url}/services/{SERVICE}/")
}
# The server token identifies the user to the service; the scope lets kernels call it.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={SERVICE}",
]


#: Where dashboard users' servers are rooted: the shipped dashboards, index.ipynb first.
DASHBOARDS_DIR = Path(
    env("ADIT_WB_HUB_DASHBOARDS_DIR") or Path(__file__).resolve().parent.parent / "dashboards"
).absolute()
#: The landing page of a dashboard user: the dashboards their permissions allow.
DASHBOARDS_LANDING = "/voila/render/index.ipynb"


def pre_spawn_hook(spawner):  # type: ignore[no-untyped-def]
    """Dashboard users land on the list of their dashboards (Voilà, not JupyterLab),
    rendered by their own server, so as themselves: what it lists and what each
    dashboard does follow their own permissions."""
    groups = {group.name for group in spawner.user.groups}
    if "dashboard-users" in groups:
        spawner.notebook_dir = str(DASHBOARDS_DIR)
        spawner.default_url = DASHBOARDS_LANDING


c.Spawner.pre_spawn_hook = pre_spawn_hook

# Voilà: the voila server extension is installed with adit_workbench's notebook extras,
# so every user's server renders dashboards at /user/<name>/voila/render/<notebook>,
# behind the hub's login and with the user's identity. (A hub-managed Voilà *service*
# would be public and have no per-user identity: do not use one for PHI.)

c.JupyterHub.cleanup_servers = True
