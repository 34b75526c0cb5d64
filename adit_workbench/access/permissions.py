"""What a group may be allowed to do, and the roles a node can play for a group.

Permissions are granted to groups only (never to single users), as in ADIT. ``admin``
implies every other permission (ADIT's superuser); ``staff`` implies an unlimited batch
size (ADIT's ``is_staff``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import InputError

__all__ = [
    "APP_PERMISSIONS",
    "NodeRole",
    "Permission",
    "UserProfile",
    "expand",
    "parse_permission",
    "parse_role",
]


class Permission(StrEnum):
    """A permission held by a group. Values are what the CLI and the database use."""

    # Use an app (create its jobs or use its pages).
    SELECTIVE_TRANSFER = "selective_transfer"
    BATCH_QUERY = "batch_query"
    BATCH_TRANSFER = "batch_transfer"
    MASS_TRANSFER = "mass_transfer"
    EXPLORER = "explorer"
    UPLOAD = "upload"
    REST_API = "rest_api"
    # Options within the apps.
    URGENT = "urgent"
    TRANSFER_UNPSEUDONYMIZED = "transfer_unpseudonymized"
    DOWNLOAD_STUDY = "download_study"
    UNLIMITED_BATCH_SIZE = "unlimited_batch_size"
    NEVER_EXPIRING_TOKEN = "never_expiring_token"
    # See everyone's jobs; verify, restart, kill them.
    STAFF = "staff"
    # Nodes, access, settings; implies every permission.
    ADMIN = "admin"


#: The permissions that gate an app as a whole.
APP_PERMISSIONS: frozenset[Permission] = frozenset(
    {
        Permission.SELECTIVE_TRANSFER,
        Permission.BATCH_QUERY,
        Permission.BATCH_TRANSFER,
        Permission.MASS_TRANSFER,
        Permission.EXPLORER,
        Permission.UPLOAD,
        Permission.REST_API,
    }
)

_IMPLIES: dict[Permission, frozenset[Permission]] = {
    Permission.ADMIN: frozenset(Permission),
    Permission.STAFF: frozenset({Permission.UNLIMITED_BATCH_SIZE}),
}


class NodeRole(StrEnum):
    """How a group may use a node."""

    SOURCE = "source"
    DESTINATION = "destination"


def expand(granted: Iterable[str]) -> frozenset[Permission]:
    """The effective permissions of granted names; names this version does not know are
    ignored (a newer version may have added them to the shared database)."""
    known = {p.value for p in Permission}
    held = {Permission(name) for name in granted if name in known}
    for permission in list(held):
        held |= _IMPLIES.get(permission, frozenset())
    return frozenset(held)


def parse_permission(value: str | Permission) -> Permission:
    """A :class:`Permission` from its value (case-insensitive, ``-`` or ``_``)."""
    if isinstance(value, Permission):
        return value
    text = str(value).strip().lower().replace("-", "_")
    try:
        return Permission(text)
    except ValueError:
        valid = ", ".join(p.value for p in Permission)
        raise InputError(f"unknown permission {value!r}; valid: {valid}") from None


def parse_role(value: str | NodeRole) -> NodeRole:
    """A :class:`NodeRole` from ``"source"`` or ``"destination"``."""
    if isinstance(value, NodeRole):
        return value
    try:
        return NodeRole(str(value).strip().lower())
    except ValueError:
        raise InputError(f"unknown node role {value!r}; valid: source, destination") from None


# Here, not in ``control``, so that the remote client builds it without the store.
@dataclass(frozen=True)
class UserProfile:
    """What a user is and may do, as read now."""

    name: str
    groups: tuple[str, ...]
    permissions: frozenset[Permission]
    nodes: Mapping[str, frozenset[NodeRole]] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        """Whether the user may manage nodes, access and settings."""
        return Permission.ADMIN in self.permissions
