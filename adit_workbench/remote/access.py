"""What the service says the user may do, for a client to show (never to enforce).

Widgets hide the controls of permissions a user lacks and list only the nodes a role may
use; on the embedded workbench they ask :class:`~adit_workbench.access.Access`. Over the
service they ask this class, which reads ``/api/me`` and ``/api/site``: the same answers,
as the same types. Nothing here is a check: every call the user makes is checked again
by the service, whatever a modified client believes.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from ..access.permissions import NodeRole, Permission, UserProfile, parse_permission, parse_role
from ..access.site import SiteStatus
from .client import ServiceClient

if TYPE_CHECKING:
    # access.admin and access.tokens import SQLAlchemy: a kernel's client loads their
    # records only when it meets one (tests/test_imports.py).
    from ..access.admin import GroupInfo, UserInfo
    from ..access.audit import AuditRecord
    from ..access.tokens import NewToken, TokenInfo

__all__ = ["RemoteAccess", "RemoteAdmin", "RemoteTokens"]


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def _site(data: dict[str, Any]) -> SiteStatus:
    return SiteStatus(
        maintenance=bool(data.get("maintenance")),
        announcement=str(data.get("announcement") or ""),
        updated_at=_when(data.get("updated_at")),
        updated_by=str(data.get("updated_by") or ""),
    )


def _group(data: dict[str, Any]) -> GroupInfo:
    from ..access.admin import GroupInfo

    return GroupInfo(
        name=str(data["name"]),
        users=tuple(str(u) for u in data.get("users") or ()),
        permissions=tuple(str(p) for p in data.get("permissions") or ()),
        nodes={
            str(node): frozenset(parse_role(r) for r in roles)
            for node, roles in (data.get("nodes") or {}).items()
        },
    )


def _token(data: dict[str, Any]) -> TokenInfo:
    from ..access.tokens import TokenInfo

    return TokenInfo(
        id=int(data["id"]),
        user=str(data["user"]),
        prefix=str(data["prefix"]),
        description=str(data.get("description") or ""),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        expires_at=_when(data.get("expires_at")),
        last_used_at=_when(data.get("last_used_at")),
        revoked_at=_when(data.get("revoked_at")),
    )


def _name(value: str) -> str:
    return quote(value, safe="")


class RemoteTokens:
    """The caller's workbench API tokens (``/api/tokens``): the methods of
    :class:`~adit_workbench.access.TokenManager`, checked by the service."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def create(self, *, expires: str | int | None = 30, description: str = "") -> NewToken:
        """A new token; its secret is in the answer only."""
        days: str | int = "never" if expires is None or str(expires) == "never" else int(expires)
        data = self._client.post("api/tokens", {"expires": days, "description": description})
        from ..access.tokens import NewToken

        return NewToken(str(data["token"]), _token(data))

    def list(self, *, all_users: bool = False) -> list[TokenInfo]:
        """The caller's tokens (every user's for admins with ``all_users``)."""
        rows = self._client.get("api/tokens", params={"all_users": all_users})
        return [_token(row) for row in rows]

    def revoke(self, token_id: int) -> TokenInfo:
        """Revoke one of the caller's tokens (admins: anyone's)."""
        response = self._client.request("DELETE", f"api/tokens/{int(token_id)}")
        return _token(response.json())


class RemoteAdmin:
    """Access administration through ``/api/admin/…``: the methods of
    :class:`~adit_workbench.access.AccessAdmin` the command line uses. The service
    requires ``admin`` on each (this client checks nothing)."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def groups(self) -> list[GroupInfo]:
        """Every group, sorted by name."""
        return [_group(g) for g in self._client.get("api/admin/groups")]

    def group(self, name: str) -> GroupInfo:
        """One group (NotFound if there is none)."""
        return _group(self._client.get(f"api/admin/groups/{_name(name)}"))

    def grant(
        self, group: str, node: str, *, source: bool = False, destination: bool = False
    ) -> GroupInfo:
        """Let ``group`` use ``node`` as a source and/or destination (both if neither)."""
        body = {"node": node, "source": source, "destination": destination}
        return _group(self._client.post(f"api/admin/groups/{_name(group)}/nodes", body))

    def revoke(self, group: str, node: str, role: NodeRole | str | None = None) -> GroupInfo:
        """Take a role (default: every role) on ``node`` away from ``group``."""
        params = {"role": str(getattr(role, "value", role))} if role is not None else None
        path = f"api/admin/groups/{_name(group)}/nodes/{_name(node)}"
        return _group(self._client.request("DELETE", path, params=params).json())

    def add_permission(self, group: str, permission: Permission | str) -> GroupInfo:
        """Give ``group`` a permission."""
        body = {"permission": str(getattr(permission, "value", permission))}
        return _group(self._client.post(f"api/admin/groups/{_name(group)}/permissions", body))

    def remove_permission(self, group: str, permission: Permission | str) -> GroupInfo:
        """Take a permission away from ``group``."""
        name = str(getattr(permission, "value", permission))
        path = f"api/admin/groups/{_name(group)}/permissions/{_name(name)}"
        return _group(self._client.request("DELETE", path).json())

    def set_members(self, group: str, users: list[str]) -> GroupInfo:
        """Set the members of ``group`` (local users)."""
        path = f"api/admin/groups/{_name(group)}/members"
        return _group(self._client.request("PUT", path, json={"users": list(users)}).json())

    def users(self) -> list[UserInfo]:
        """Every user who ever connected."""
        from ..access.admin import UserInfo

        return [
            UserInfo(
                name=str(u["name"]),
                source=str(u["source"]),
                admin=bool(u["admin"]),
                groups=tuple(str(g) for g in u.get("groups") or ()),
                last_seen_at=_when(u.get("last_seen_at")),
            )
            for u in self._client.get("api/admin/users")
        ]

    def export_audit(self, target: str | Path | IO[str], *, since: datetime | None = None) -> int:
        """Write the audit log as CSV (from ``since``); returns the number of events."""
        params = {"since": since.isoformat()} if since is not None else None
        text = self._client.request("GET", "api/admin/audit", params=params).text
        if isinstance(target, str | Path):
            Path(target).write_text(text, encoding="utf-8", newline="")
        else:
            target.write(text)
        return max(0, sum(1 for _ in csv.reader(io.StringIO(text))) - 1)

    def audit_events(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Audit rows, oldest first, optionally filtered."""
        from ..access.audit import AuditRecord, Outcome

        asked = {"user": user, "action": action, "limit": limit,
                 "since": since.isoformat() if since is not None else None}  # fmt: skip
        params = {k: v for k, v in asked.items() if v is not None}
        return [
            AuditRecord(
                id=int(e["id"]),
                at=datetime.fromisoformat(str(e["at"])),
                user=str(e["user"]),
                action=str(e["action"]),
                node=str(e["node"]) if e.get("node") is not None else None,
                outcome=Outcome(e["outcome"]),
                details=dict(e.get("details") or {}),
            )
            for e in self._client.get("api/admin/audit/events", params=params)
        ]

    def set_maintenance(self, on: bool, *, message: str | None = None) -> SiteStatus:
        """Turn maintenance mode on or off (and set the announcement when given)."""
        body: dict[str, Any] = {"maintenance": on}
        if message is not None:
            body["announcement"] = message
        return _site(self._client.request("PUT", "api/admin/site", json=body).json())

    def set_announcement(self, message: str) -> SiteStatus:
        """Set the announcement shown to users."""
        body = {"announcement": message}
        return _site(self._client.request("PUT", "api/admin/site", json=body).json())


class RemoteAccess:
    """The read side of :class:`~adit_workbench.access.Access`, answered by the service."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<RemoteAccess user={self.profile().name!r}>"

    def profile(self) -> UserProfile:
        """The user's groups, permissions and usable nodes, as of now."""
        data: dict[str, Any] = self._client.get("api/me")
        permissions = set()
        for name in data.get("permissions", []):
            try:
                permissions.add(parse_permission(name))
            except Exception:  # a newer service's permission: not one this client shows
                continue
        nodes = {
            str(node): frozenset(parse_role(r) for r in roles)
            for node, roles in data.get("nodes", {}).items()
        }
        return UserProfile(
            str(data["user"]), tuple(data.get("groups", [])), frozenset(permissions), nodes
        )

    def permissions(self) -> frozenset[Permission]:
        """The user's effective permissions."""
        return self.profile().permissions

    def has(self, permission: Permission | str) -> bool:
        """Whether the user holds ``permission``."""
        return parse_permission(permission) in self.permissions()

    @property
    def is_admin(self) -> bool:
        """Whether the user holds the admin permission."""
        return self.has(Permission.ADMIN)

    def node_roles(self) -> dict[str, frozenset[NodeRole]]:
        """Node name → roles the user may use it in."""
        return dict(self.profile().nodes)

    def visible_nodes(self, role: NodeRole | str | None = None) -> list[str]:
        """Names of the nodes the user may use (in ``role``, or in any role), sorted."""
        wanted = parse_role(role) if role is not None else None
        return sorted(
            name
            for name, roles in self.node_roles().items()
            if roles and (wanted is None or wanted in roles)
        )

    def site_status(self) -> SiteStatus:
        """Maintenance mode and announcement."""
        data: dict[str, Any] = self._client.get("api/site")
        return _site(data)

    @cached_property
    def tokens(self) -> RemoteTokens:
        """The caller's API tokens (create, list, revoke), managed by the service."""
        return RemoteTokens(self._client)

    @cached_property
    def admin(self) -> RemoteAdmin:
        """Access administration; the service refuses it to anyone but admins."""
        return RemoteAdmin(self._client)
