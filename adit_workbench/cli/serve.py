"""``adit-workbench serve``: run the workbench service (the REST API) with uvicorn.

Run by JupyterHub as a managed service, it takes its address from
``JUPYTERHUB_SERVICE_URL`` and its path from ``JUPYTERHUB_SERVICE_PREFIX``
(``/services/workbench/``) and accepts hub tokens and hub logins; run on its own it
listens where ``--host``/``--port`` say and accepts workbench API tokens. Either way it
is the process (with the workers) that holds the database, the secret and the PACS.

The ``JUPYTERHUB_*`` variables are read here, not in Settings: the hub sets them for the
service it starts; they are not workbench settings anyone configures.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import click

from . import app
from ._common import service_host_only


def hub_service_environment(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Address, prefix and whether hub tokens are accepted, from the hub's service env."""
    env = dict(os.environ) if env is None else env
    found: dict[str, Any] = {"hub": bool(env.get("JUPYTERHUB_API_TOKEN"))}
    url = env.get("JUPYTERHUB_SERVICE_URL")
    if url:
        parts = urlsplit(url)
        found["host"] = parts.hostname or "127.0.0.1"
        found["port"] = parts.port or (443 if parts.scheme == "https" else 80)
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        found["prefix"] = prefix
    return found


def _hub_auth() -> Any:
    from jupyterhub.services.auth import HubOAuth

    from ..web.auth import HUB_CACHE_SECONDS

    # HubOAuth reads the service's token, API URL, name and OAuth client from the env.
    return HubOAuth(cache_max_age=HUB_CACHE_SECONDS)


@app.command("serve")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8040).")
@click.option("--prefix", default=None, help="URL path the service is mounted under.")
@click.option("--log-level", default="warning", show_default=True, help="uvicorn's log level.")
@service_host_only
def serve(host: str | None, port: int | None, prefix: str | None, log_level: str) -> None:
    """Run the workbench service (REST API under /api/, OpenAPI at /openapi.json)."""
    import uvicorn

    from ..config import get_settings
    from ..web.app import create_app

    hub = hub_service_environment()
    settings = get_settings()
    if settings.is_embedded_database:
        settings.ensure_data_dir()
    application = create_app(
        settings,
        prefix=prefix if prefix is not None else hub.get("prefix", ""),
        hub_auth=_hub_auth() if hub["hub"] else None,
    )
    uvicorn.run(
        application,
        host=host or hub.get("host", "127.0.0.1"),
        port=port if port is not None else hub.get("port", 8040),
        log_level=log_level,
        proxy_headers=True,
    )
