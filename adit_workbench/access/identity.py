"""Who is calling: a JupyterHub user (verified with the hub), the local OS user, or the
workbench's own operator on the service's account.

The local OS user (``$USER``) is only a claim the calling process makes about itself, so
it is accepted only where there is nothing to protect from that process: the embedded
single-user SQLite database (:func:`~adit_workbench.access.sign_in` refuses it on a
shared database). On a shared database people reach the workbench through the service
(a hub token or a workbench API token), and the service's own account signs in as the
*operator* named by the ``ADIT_WB_OPERATOR`` setting, which exists only in the service's
environment beside the database credentials (whoever can read it can read the database
password too, so it grants nothing new).

This module reads the ``JUPYTERHUB_*`` environment variables itself instead of taking
them from :class:`~adit_workbench.config.Settings`: JupyterHub sets them for each
single-user server (and so for every kernel and Voilà dashboard it starts), they are not
workbench settings a user configures, and ``JUPYTERHUB_USER`` alone is only a claim that
must be checked against the hub with the server's token.
"""

from __future__ import annotations

import getpass
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from ..errors import ConfigurationError, PermissionDenied

__all__ = [
    "HUB_TIMEOUT",
    "Identity",
    "IdentitySource",
    "hub_identity",
    "local_identity",
    "operator_identity",
    "resolve_identity",
]

#: Seconds to wait for the hub API; it answers locally in milliseconds.
HUB_TIMEOUT = 10.0


class IdentitySource(StrEnum):
    """Where an identity was established."""

    JUPYTERHUB = "jupyterhub"
    LOCAL = "local"
    #: Established by server-side code: the service's operator account, or the service
    #: acting for a user it authenticated itself. Never derived from a client's claim.
    SERVICE = "service"


@dataclass(frozen=True)
class Identity:
    """A verified user: name, the hub's admin flag and the hub groups (empty locally)."""

    name: str
    source: IdentitySource
    admin: bool = False
    groups: tuple[str, ...] = ()


def local_identity() -> Identity:
    """The OS user running this process (the embedded default: no hub involved)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError) as exc:  # a uid with no passwd entry and no $USER
        raise ConfigurationError("cannot tell the local user name (set USER)") from exc
    return Identity(name=name, source=IdentitySource.LOCAL)


def operator_identity(name: str) -> Identity:
    """The workbench operator: server-side code only (the service's account, ``hub start``).

    Use it for commands run where the database credentials live; it is trusted on a
    shared database because reaching that database already takes those credentials.
    """
    if not name or not name.isprintable() or len(name) > 150:
        raise ConfigurationError("the operator name must be 1-150 printable characters")
    return Identity(name=name, source=IdentitySource.SERVICE)


def hub_identity(api_url: str, token: str, *, timeout: float = HUB_TIMEOUT) -> Identity:
    """Ask the hub who owns ``token`` (``GET {api_url}/user``).

    Any hub token may read its owner's name, admin flag and groups, so the single-user
    server's own token is enough.

    Raises
    ------
    PermissionDenied
        The hub refused the token.
    ConfigurationError
        The hub could not be reached or answered nonsense.
    """
    request = urllib.request.Request(
        api_url.rstrip("/") + "/user", headers={"Authorization": f"token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            model = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise PermissionDenied("JupyterHub did not accept this server's API token") from None
        raise ConfigurationError(f"JupyterHub API {api_url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConfigurationError(f"JupyterHub API {api_url} unreachable: {exc}") from None
    if not isinstance(model, dict) or model.get("kind", "user") != "user" or not model.get("name"):
        raise PermissionDenied("the JupyterHub token does not belong to a user")
    groups = model.get("groups") or []
    return Identity(
        name=str(model["name"]),
        source=IdentitySource.JUPYTERHUB,
        admin=bool(model.get("admin", False)),
        groups=tuple(sorted(str(g) for g in groups)),
    )


def resolve_identity(
    environ: Mapping[str, str] | None = None, *, operator: str | None = None
) -> Identity:
    """The identity of this process: the hub user when running under JupyterHub, else the
    operator (``operator``, by default the ``ADIT_WB_OPERATOR`` setting) when set, else local.

    Under a hub (``JUPYTERHUB_USER`` set) the claim is verified with
    ``JUPYTERHUB_API_TOKEN`` at ``JUPYTERHUB_API_URL``; a missing token or a token of
    another user is refused rather than falling back to the OS user, which on a hub with
    SimpleLocalProcessSpawner is the same account for everyone.
    """
    env = os.environ if environ is None else environ
    claimed = env.get("JUPYTERHUB_USER")
    if not claimed:
        if operator is None and environ is None:
            from ..config import get_settings

            operator = get_settings().operator
        return operator_identity(operator) if operator else local_identity()
    api_url, token = env.get("JUPYTERHUB_API_URL"), env.get("JUPYTERHUB_API_TOKEN")
    if not api_url or not token:
        raise PermissionDenied(
            "JUPYTERHUB_USER is set but JUPYTERHUB_API_URL or JUPYTERHUB_API_TOKEN is not: "
            "the hub identity cannot be verified"
        )
    identity = hub_identity(api_url, token)
    if identity.name != claimed:
        raise PermissionDenied("JUPYTERHUB_USER does not match the owner of the hub token")
    return identity
