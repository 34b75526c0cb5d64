"""What the service says the user may do, for a client to show (never to enforce).

Widgets hide the controls of permissions a user lacks and list only the nodes a role may
use; on the embedded workbench they ask :class:`~adit_workbench.access.Access`. Over the
service they ask this class, which reads ``/api/me`` and ``/api/site``: the same answers,
as the same types. Nothing here is a check: every call the user makes is checked again
by the service, whatever a modified client believes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..access.permissions import NodeRole, Permission, UserProfile, parse_permission, parse_role
from ..access.site import SiteStatus
from .client import ServiceClient

__all__ = ["RemoteAccess"]


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
        updated = data.get("updated_at")
        return SiteStatus(
            maintenance=bool(data.get("maintenance")),
            announcement=str(data.get("announcement") or ""),
            updated_at=datetime.fromisoformat(updated) if updated else None,
            updated_by=str(data.get("updated_by") or ""),
        )
