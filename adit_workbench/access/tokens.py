"""Workbench API tokens for scripts and the REST service.

A token is ``awb_<8 hex>_<43 url-safe chars>``. The first part is a random public prefix
(shown in listings, unique, used to find the row); the whole token is stored only as its
SHA-256 hash, so it is shown once, at creation. 256 random bits make a salted slow hash
unnecessary: nobody can guess their way to a preimage.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from ..errors import InputError, NotFound, PermissionDenied, StoreError
from ..store.access import ApiToken, User
from ..store.models import utcnow
from .audit import Outcome, record
from .control import find_user
from .permissions import Permission

if TYPE_CHECKING:
    from ..store import Database
    from .control import Access

__all__ = [
    "EXPIRY_DAYS",
    "TOKEN_MARK",
    "NewToken",
    "TokenInfo",
    "TokenManager",
    "authenticate_token",
    "parse_expiry",
]

TOKEN_MARK = "awb_"
_PREFIX_LENGTH = len(TOKEN_MARK) + 8
#: The lifetimes a user may choose, in days; ``None`` never expires.
EXPIRY_DAYS: tuple[int | None, ...] = (1, 7, 30, 90, None)


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: everything but the secret."""

    id: int
    user: str
    prefix: str
    description: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Neither revoked nor expired."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > utcnow()


@dataclass(frozen=True)
class NewToken:
    """A freshly created token: :attr:`token` is available only here, once."""

    token: str
    info: TokenInfo

    def __repr__(self) -> str:
        return f"<NewToken {self.info.id} {self.info.prefix}… (secret in .token)>"


def parse_expiry(value: str | int | None) -> int | None:
    """Days from ``1``, ``7``, ``30``, ``90`` or ``never`` (``None``)."""
    if value is None or str(value).strip().lower() == "never":
        return None
    try:
        days = int(value)
    except ValueError:
        days = -1
    if days not in EXPIRY_DAYS:
        raise InputError(f"token expiry {value!r} not allowed; choose 1, 7, 30, 90 or never")
    return days


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _info(row: ApiToken, user: str) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=user,
        prefix=row.prefix,
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class TokenManager:
    """Create, list and revoke the tokens of the user an :class:`Access` is bound to."""

    def __init__(self, access: Access) -> None:
        self._access = access
        self._database = access.database

    def create(self, *, expires: str | int | None = 30, description: str = "") -> NewToken:
        """A new token for this user; needs ``rest_api`` (and ``never_expiring_token``
        for ``expires="never"``)."""
        days = parse_expiry(expires)
        self._access.require(Permission.REST_API, action="token.create")
        if days is None:
            self._access.require(Permission.NEVER_EXPIRING_TOKEN, action="token.create")
        for attempt in range(3):
            prefix = TOKEN_MARK + secrets.token_hex(4)
            token = f"{prefix}_{secrets.token_urlsafe(32)}"
            try:
                with self._database.session(write=True) as session:
                    user = find_user(session, self._access.user)
                    if user is None:
                        raise NotFound(f"user {self._access.user!r} is not known")
                    row = ApiToken(
                        user_id=user.id,
                        prefix=prefix,
                        token_hash=_hash(token),
                        description=description,
                        expires_at=utcnow() + timedelta(days=days) if days else None,
                    )
                    session.add(row)
                    session.flush()
                    record(
                        session,
                        user.name,
                        "token.create",
                        details={"token_id": row.id, "prefix": prefix, "expires_days": days},
                    )
                    return NewToken(token, _info(row, user.name))
            except StoreError:
                if attempt == 2:  # three prefix collisions in a row: something else is wrong
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def list(self, *, all_users: bool = False) -> list[TokenInfo]:
        """This user's tokens (every user's with ``all_users``, admins only), oldest first."""
        if all_users:
            self._access.require(Permission.ADMIN, action="token.list")
        with self._database.session() as session:
            query = select(ApiToken, User.name).join(User).order_by(ApiToken.id)
            if not all_users:
                query = query.where(User.name == self._access.user)
            return [_info(row, name) for row, name in session.execute(query)]

    def revoke(self, token_id: int) -> TokenInfo:
        """Revoke a token of this user (admins: of anyone). Revoking twice is harmless."""
        admin = self._access.is_admin
        with self._database.session(write=True) as session:
            found = session.execute(
                select(ApiToken, User.name).join(User).where(ApiToken.id == token_id)
            ).one_or_none()
            if found is None or (found[1] != self._access.user and not admin):
                # Same answer for someone else's token: ids are not secret, ownership is.
                raise NotFound(f"no token {token_id} of user {self._access.user!r}")
            row, owner = found
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                record(
                    session,
                    self._access.user,
                    "token.revoke",
                    details={"token_id": row.id, "prefix": row.prefix, "owner": owner},
                )
            return _info(row, owner)


def authenticate_token(database: Database, token: str) -> User:
    """The user owning a valid ``token``; records its use (``last_used_at`` and an audit row).

    The caller then checks permissions with ``Access(database, user.name)``, as for any
    other entry point (the REST service requires ``rest_api``).

    Raises
    ------
    PermissionDenied
        Unknown, malformed, revoked or expired token (one message for all, audited).
    """
    token = token.strip()
    prefix = token[:_PREFIX_LENGTH]
    with database.session() as session:
        row = None
        if token.startswith(TOKEN_MARK) and len(token) > _PREFIX_LENGTH:
            row = session.scalars(select(ApiToken).where(ApiToken.prefix == prefix)).one_or_none()
        now = utcnow()
        reason = None
        if row is None or not hmac.compare_digest(row.token_hash, _hash(token)):
            reason = "unknown"
        elif row.revoked_at is not None:
            reason = "revoked"
        elif row.expires_at is not None and row.expires_at <= now:
            reason = "expired"
        if reason is None and row is not None:
            row.last_used_at = now
            user = row.user
            record(session, user.name, "token.use", details={"token_id": row.id})
            return user
        owner = row.user.name if row is not None and reason != "unknown" else "(unknown)"
        token_id = row.id if row is not None else None
    # Audited in a transaction of its own: the one above ends before the error is raised.
    with database.session() as session:
        details = {"reason": reason, "token_id": token_id}
        record(session, owner, "token.use", details=details, outcome=Outcome.DENIED)
    raise PermissionDenied("invalid, expired or revoked workbench API token")
