"""Where the workbench service is, and the token to show it.

Settings come first (``ADIT_WB_SERVICE_URL`` and ``ADIT_WB_API_TOKEN``). Inside a
JupyterHub user server the token is the server's own ``JUPYTERHUB_API_TOKEN`` and, unless
the URL is configured, the hub is asked where its ``workbench`` service is. Like
:mod:`adit_workbench.access.identity`, this reads the ``JUPYTERHUB_*`` variables itself:
the hub sets them for each server; they are not workbench settings.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SERVICE_NAME", "service_address"]

#: The name the hub's configuration gives the workbench service.
SERVICE_NAME = "workbench"


def _hub_service_url(api_url: str, token: str) -> str | None:
    """``{url}{prefix}`` of the hub's workbench service, if the token may read it."""
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/services/{SERVICE_NAME}",
        headers={"Authorization": f"token {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            model = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if not isinstance(model, dict) or not model.get("url"):
        return None
    return str(model["url"]).rstrip("/") + "/" + str(model.get("prefix", "")).lstrip("/")


def service_address(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(service URL, token)`` when this process should be a client of the service."""
    env = os.environ if environ is None else environ
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    url = settings.service_url
    in_hub_server = bool(env.get("JUPYTERHUB_USER")) and bool(env.get("JUPYTERHUB_API_TOKEN"))
    if token is None and in_hub_server:
        token = env["JUPYTERHUB_API_TOKEN"]
        if url is None and env.get("JUPYTERHUB_API_URL"):
            url = _hub_service_url(env["JUPYTERHUB_API_URL"], token)
    if url and token:
        return url, token
    return None
