"""JupyterHub configuration for a department running adit_workbench.

Start it as root (or a user that may spawn servers for others) in a directory of its own::

    export JUPYTERHUB_DB_URL=postgresql+psycopg://jhub:SECRET@db.example.org/jupyterhub
    export ADIT_WB_DATABASE_URL=postgresql+psycopg://workbench:SECRET@db.example.org/workbench
    export ADIT_WB_REDIS_URL=redis://127.0.0.1:6379/0
    jupyterhub -f jupyter_config/jupyterhub_config.py

JupyterHub is the identity provider: inside a user's server (notebooks, terminals, Voilà
dashboards) ``aw.connect()`` verifies ``JUPYTERHUB_USER`` with the hub and mirrors the
user's hub groups into the workbench database on every connect. Manage membership here
(``load_groups`` below, the hub admin page or the hub API); manage what each group may do
with ``adit-workbench access grant|perm``.

Environment (all optional except where noted):

``JUPYTERHUB_DB_URL``
    The hub's own database; PostgreSQL for production (``postgresql+psycopg://…``, psycopg 3
    is installed with adit_workbench). Default: ``sqlite:///jupyterhub.sqlite`` in the CWD.
``ADIT_WB_*``
    Passed to every user's server, so kernels share one workbench database, queue and
    secret (``ADIT_WB_DATABASE_URL`` is required for a multi-user hub).
``ADIT_WB_HUB_AUTHENTICATOR`` / ``ADIT_WB_HUB_SPAWNER``
    Default ``pam`` and ``localprocess`` (one system account per user). ``simple``
    (SimpleLocalProcessSpawner) runs every server as the hub's own user: demos only.
``ADIT_WB_HUB_DICOMWEB``
    ``1`` registers the DICOMweb REST service (HubOAuth) at ``/services/dicomweb/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (injected by JupyterHub)

VENV_BIN = Path(sys.executable).parent  # the environment jupyterhub runs from
env = os.environ.get

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

# Example groups. Hub groups become workbench groups on the members' next connect();
# grant them nodes and permissions with the CLI, e.g.
#   adit-workbench access grant radiology PACS --source
#   adit-workbench access grant radiology RESEARCH --destination
#   adit-workbench access perm add radiology selective_transfer
c.JupyterHub.load_groups = {
    "radiology": {"users": []},
    "research-students": {"users": []},
    # Members start in the dashboards (Voilà) instead of JupyterLab; see pre_spawn_hook.
    "dashboard-users": {"users": []},
}

# -- single-user servers ---------------------------------------------------------------
c.JupyterHub.spawner_class = env("ADIT_WB_HUB_SPAWNER", "localprocess")
# An absolute path: the hub's PATH lacks the venv's bin/ unless it was activated.
c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
if os.geteuid() == 0 and c.JupyterHub.spawner_class == "simple":
    c.Spawner.args = ["--allow-root"]  # servers run as the hub's user (root) here
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
# One workbench for everybody: the database, queue and secret settings reach every kernel.
c.Spawner.environment = {k: v for k, v in os.environ.items() if k.startswith("ADIT_WB_")}
# The server token already identifies the user (name, admin flag, groups: what
# aw.connect() asks /hub/api/user for); the service scope lets kernels call the REST API.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=dicomweb",
]


def pre_spawn_hook(spawner):  # type: ignore[no-untyped-def]
    """Dashboard users land in Voilà, served by their own server (so as themselves)."""
    groups = {group.name for group in spawner.user.groups}
    if "dashboard-users" in groups:
        spawner.default_url = "/voila/tree"


c.Spawner.pre_spawn_hook = pre_spawn_hook

# Voilà: the voila server extension is installed with adit_workbench's notebook extras,
# so every user's server renders dashboards at /user/<name>/voila/render/<notebook>,
# behind the hub's login and with the user's identity. (A hub-managed Voilà *service*
# would be public and have no per-user identity: do not use one for PHI.)

# -- services -----------------------------------------------------------------------------
c.JupyterHub.services = []
c.JupyterHub.load_roles = []
if env("ADIT_WB_HUB_DICOMWEB") == "1":
    # The DICOMweb REST service (QIDO/WADO/STOW): browsers via HubOAuth, scripts via
    # workbench API tokens (adit-workbench tokens create). Access is checked again inside
    # the service by the workbench's own groups and permissions.
    c.JupyterHub.services.append(
        {
            "name": "dicomweb",
            "url": env("ADIT_WB_DICOMWEB_URL", "http://127.0.0.1:10101"),
            "command": [sys.executable, "-m", "adit_workbench.web"],
            "environment": dict(c.Spawner.environment),
            "oauth_no_confirm": True,
            "display": True,
        }
    )
    # The default user role lacks access to services: grant it to the groups that may.
    c.JupyterHub.load_roles.append(
        {
            "name": "dicomweb-users",
            "scopes": ["access:services!service=dicomweb"],
            "groups": ["radiology", "research-students"],
        }
    )

c.JupyterHub.cleanup_servers = True
