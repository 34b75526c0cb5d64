"""Who is calling the service: established here, never taken from the client's word.

Three credentials are accepted, each checked by the service itself:

* a workbench API token (``Authorization: Token awb_…`` or ``Bearer awb_…``), checked
  against the token table (:func:`~adit_workbench.access.authenticate_token`: unknown,
  expired and revoked tokens are refused and audited); its user also needs ``rest_api``;
* a JupyterHub token (a user server's ``JUPYTERHUB_API_TOKEN`` or an OAuth token), checked
  with :class:`jupyterhub.services.auth.HubAuth`, whose answers (and the user's hub groups
  read with the service's own token) are reused at most ``ADIT_WB_AUTH_CACHE_SECONDS``
  (default and upper bound :data:`HUB_CACHE_SECONDS`), so that a user or group removed at
  the hub is refused within a minute; the token must carry the service's access scope
  (``access:services!service=workbench``);
* the service's own session cookie for browsers, set after the hub's OAuth login; it holds
  the hub token, signed with a key derived from the master secret.

The identity (name, hub groups, admin flag) comes from the hub's answer or the token
table; :func:`~adit_workbench.access.sign_in` mirrors hub groups into the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..access import (
    Access,
    Identity,
    IdentitySource,
    Permission,
    authenticate_token,
    sign_in,
)
from ..access.control import effective_permissions
from ..access.tokens import TOKEN_MARK
from ..errors import PermissionDenied
from ..store.access import ApiToken
from ..store.models import utcnow
from .errors import ApiError

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database

__all__ = ["COOKIE_NAME", "HUB_CACHE_SECONDS", "Authenticator"]

#: Longest time the hub's answer about a token (and a group sync) may be reused; the
#: service uses ``Settings.auth_cache_seconds`` (at most this).
HUB_CACHE_SECONDS = 60
#: Name of the service's session cookie.
COOKIE_NAME = "adit-workbench-session"
_SCHEMES = ("token", "bearer")


class Authenticator:
    """Turns a request's credentials into an :class:`Access` for its user."""

    def __init__(self, database: Database, settings: Settings, hub_auth: Any = None) -> None:
        self._database = database
        self._settings = settings
        self.hub_auth = hub_auth
        self.cache_seconds = min(settings.auth_cache_seconds, HUB_CACHE_SECONDS)
        if hub_auth is not None:
            # HubAuth caches the hub's answers itself (300 s unless told): never longer than
            # ours. Its cache may already exist, made with the old age.
            hub_auth.cache_max_age = self.cache_seconds
            hub_auth.cache.max_age = hub_auth.cache.purge_interval = self.cache_seconds
        self._synced: dict[Identity, float] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._hub_users: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()
        self._cookie_key: bytes | None = None

    # -- credentials ------------------------------------------------------------------
    @staticmethod
    def bearer(authorization: str | None) -> str | None:
        """The token of an ``Authorization: Token X`` / ``Bearer X`` header."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() not in _SCHEMES or not value.strip():
            raise ApiError(
                401, "Unauthenticated", "send 'Authorization: Token <token>' or 'Bearer <token>'"
            )
        return value.strip()

    def access_for(self, authorization: str | None, cookie: str | None) -> Access:
        """The :class:`Access` of the caller; :class:`ApiError` 401 when unauthenticated."""
        token = self.bearer(authorization)
        if token is None and cookie:
            token = self.unseal(cookie)
        if token is None:
            raise ApiError(
                401,
                "Unauthenticated",
                "authentication required: send a workbench API token or a JupyterHub token "
                "('Authorization: Token <token>')",
            )
        if token.startswith(TOKEN_MARK):
            return self._workbench_token(token)
        return self._hub_token(token)

    def _workbench_token(self, token: str) -> Access:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and now - cached[1] < self.cache_seconds:
            # Checked (read only) on every request, so a revoked or expired token is refused
            # at once; its use is recorded (a write) once per cache period. The token and
            # the user's permissions are read in one transaction: this runs on every call.
            allowed = self._valid(token, key)
            if allowed is not None:
                access = Access(self._database, cached[0])
                if not allowed:  # the refusal, with its audit row, as everywhere else
                    access.require(Permission.REST_API, action="rest.token")
                return access
        try:
            name = authenticate_token(self._database, token).name
        except PermissionDenied as exc:
            raise ApiError(401, "Unauthenticated", str(exc)) from None
        with self._lock:
            self._tokens[key] = (name, now)
        access = Access(self._database, name)
        access.require(Permission.REST_API, action="rest.token")
        return access

    def _valid(self, token: str, token_hash: str) -> bool | None:
        """None when the token is no longer valid (the full check then refuses it, with its
        audit row); else whether its user holds ``rest_api``."""
        prefix = token[: len(TOKEN_MARK) + 8]  # the token's public, indexed part
        with self._database.session() as session:
            found = select(ApiToken).options(joinedload(ApiToken.user))
            row = session.scalars(found.where(ApiToken.prefix == prefix)).one_or_none()
            if (
                row is None
                or not hmac.compare_digest(row.token_hash, token_hash)
                or row.revoked_at is not None
                or (row.expires_at is not None and row.expires_at <= utcnow())
            ):
                return None
            return Permission.REST_API in effective_permissions(session, row.user)

    def _hub_token(self, token: str) -> Access:
        if self.hub_auth is None:
            raise ApiError(401, "Unauthenticated", "invalid, expired or revoked token")
        try:
            model = self.hub_auth.user_for_token(token, sync=True)
        except Exception as exc:  # the hub is down or answered nonsense
            what = type(exc).__name__
            raise ApiError(
                503, "HubUnavailable", f"JupyterHub could not check the token ({what})"
            ) from None
        if not model:
            raise ApiError(401, "Unauthenticated", "JupyterHub did not accept the token")
        if model.get("kind", "user") != "user" or not model.get("name"):
            raise ApiError(403, "PermissionDenied", "the token does not belong to a hub user")
        scopes = set(self.hub_auth.access_scopes or ())
        if scopes and not self.hub_auth.check_scopes(scopes, model):
            raise ApiError(
                403,
                "PermissionDenied",
                f"the hub token lacks the scope {' or '.join(sorted(scopes))}: ask the hub admin",
            )
        if "groups" not in model or "admin" not in model:
            # A server token may only name its owner: ask the hub with the service's token.
            model = {**model, **self._hub_user(str(model["name"]))}
        identity = Identity(
            name=str(model["name"]),
            source=IdentitySource.JUPYTERHUB,
            admin=bool(model.get("admin", False)),
            groups=tuple(sorted(str(g) for g in model.get("groups") or ())),
        )
        return self._signed_in(identity)

    def _hub_user(self, name: str) -> dict[str, Any]:
        """The hub's model of user ``name`` (groups, admin), read with the service's token."""
        now = time.monotonic()
        with self._lock:
            cached = self._hub_users.get(name)
        if cached is not None and now - cached[1] < self.cache_seconds:
            return cached[0]
        url = f"{self.hub_auth.api_url.rstrip('/')}/users/{quote(name, safe='')}"
        request = urllib.request.Request(
            url, headers={"Authorization": f"token {self.hub_auth.api_token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                found = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiError(
                503,
                "HubUnavailable",
                "cannot read the user's hub groups: give the workbench service the scopes "
                f"read:users:groups and read:users ({type(exc).__name__})",
            ) from None
        if not isinstance(found, dict) or "groups" not in found:
            raise ApiError(503, "HubUnavailable", "the hub did not tell the user's groups")
        model = {"groups": found["groups"], "admin": bool(found.get("admin", False))}
        with self._lock:
            self._hub_users[name] = (model, now)
        return model

    def _signed_in(self, identity: Identity) -> Access:
        now = time.monotonic()
        with self._lock:
            last = self._synced.get(identity)
            fresh = last is not None and now - last < self.cache_seconds
        if fresh:
            return Access(self._database, identity.name)
        # A shared database: never the embedded bootstrap that makes its user an admin.
        access = sign_in(self._database, identity, embedded=False)
        with self._lock:
            for old in [i for i in self._synced if i.name == identity.name]:
                del self._synced[old]
            self._synced[identity] = now
        return access

    # -- session cookie ---------------------------------------------------------------
    def _key(self) -> bytes:
        if self._cookie_key is None:
            master = self._settings.master_secret()
            self._cookie_key = hmac.new(master, b"adit-workbench web cookie", "sha256").digest()
        return self._cookie_key

    def seal(self, token: str) -> str:
        """A cookie value holding ``token``, signed so that a browser cannot forge one."""
        body = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
        mac = hmac.new(self._key(), body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def unseal(self, cookie: str) -> str | None:
        """The token of a cookie made by :meth:`seal`, or None when it was tampered with."""
        body, _, mac = cookie.rpartition(".")
        expected = hmac.new(self._key(), body.encode(), hashlib.sha256).hexdigest()
        if not body or not hmac.compare_digest(mac, expected):
            return None
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        except ValueError:
            return None
