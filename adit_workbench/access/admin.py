"""Administration of access: groups, node access, permissions, users, audit, site status.

Every method requires the ``admin`` permission and appends an audit row for each change.
Groups named in a grant are created on the fly, so that access for a hub group can be
prepared before any of its members first connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InputError, NotFound
from ..store.access import Group, GroupPermission, NodeAccess, User
from ..store.models import Node
from ..store.usage import UsageRow, dicomweb_usage
from .audit import AuditRecord, read_events, record, write_csv
from .control import effective_permissions
from .permissions import NodeRole, Permission, parse_permission
from .site import SiteStatus, read_site_status, write_site_status

if TYPE_CHECKING:
    from .control import Access

__all__ = ["AccessAdmin", "GroupInfo", "UserInfo"]


@dataclass(frozen=True)
class GroupInfo:
    """A group with its members, permissions and node access."""

    name: str
    users: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    nodes: Mapping[str, frozenset[NodeRole]] = field(default_factory=dict)


@dataclass(frozen=True)
class UserInfo:
    """A user as listed for admins."""

    name: str
    source: str
    admin: bool
    groups: tuple[str, ...]
    last_seen_at: datetime | None


class AccessAdmin:
    """Admin operations, performed as (and audited for) the user of an :class:`Access`."""

    def __init__(self, access: Access) -> None:
        self._access = access
        self._database = access.database

    # -- groups, node access, permissions --------------------------------------------
    def groups(self) -> list[GroupInfo]:
        """Every group, sorted by name."""
        self._access.require(Permission.ADMIN, action="access.show")
        with self._database.session(write=True) as session:
            return [_group_info(g) for g in session.scalars(select(Group).order_by(Group.name))]

    def group(self, name: str) -> GroupInfo:
        """One group (raises NotFound)."""
        self._access.require(Permission.ADMIN, action="access.show")
        with self._database.session(write=True) as session:
            return _group_info(_get_group(session, name))

    def grant(
        self, group: str, node: str, *, source: bool = False, destination: bool = False
    ) -> GroupInfo:
        """Let ``group`` use ``node`` as a source and/or destination (both if neither given).

        Roles add to what the group already has; use :meth:`revoke` to take them away.
        """
        if not source and not destination:
            source = destination = True
        self._access.require(Permission.ADMIN, action="access.grant", node=node)
        with self._database.session(write=True) as session:
            node_row = session.scalars(select(Node).where(Node.name == node)).one_or_none()
            if node_row is None:
                raise NotFound(f"no node named {node!r}")
            group_row = _get_group(session, group, create=True)
            entry = next((a for a in group_row.node_access if a.node_id == node_row.id), None)
            if entry is None:
                entry = NodeAccess(node_id=node_row.id, source=False, destination=False)
                group_row.node_access.append(entry)
            entry.source = entry.source or source
            entry.destination = entry.destination or destination
            self._record(
                session,
                "access.grant",
                node=node,
                group=group,
                source=entry.source,
                destination=entry.destination,
            )
            session.flush()
            return _group_info(group_row)

    def revoke(self, group: str, node: str, role: NodeRole | str | None = None) -> GroupInfo:
        """Take ``role`` (default: every role) on ``node`` away from ``group``."""
        self._access.require(Permission.ADMIN, action="access.revoke", node=node)
        with self._database.session(write=True) as session:
            group_row = _get_group(session, group)
            entry = next((a for a in group_row.node_access if a.node.name == node), None)
            if entry is None:
                raise NotFound(f"group {group!r} has no access to node {node!r}")
            if role is None or NodeRole(role) is NodeRole.SOURCE:
                entry.source = False
            if role is None or NodeRole(role) is NodeRole.DESTINATION:
                entry.destination = False
            if not (entry.source or entry.destination):
                group_row.node_access.remove(entry)
            self._record(session, "access.revoke", node=node, group=group, role=role or "all")
            session.flush()
            return _group_info(group_row)

    def add_permission(self, group: str, permission: Permission | str) -> GroupInfo:
        """Give ``group`` a permission (creating the group if needed)."""
        perm = parse_permission(permission)
        self._access.require(Permission.ADMIN, action="access.perm.add")
        with self._database.session(write=True) as session:
            group_row = _get_group(session, group, create=True)
            if perm.value not in {p.permission for p in group_row.permissions}:
                group_row.permissions.append(GroupPermission(permission=perm.value))
            self._record(session, "access.perm.add", group=group, permission=perm.value)
            session.flush()
            return _group_info(group_row)

    def remove_permission(self, group: str, permission: Permission | str) -> GroupInfo:
        """Take a permission away from ``group``."""
        perm = parse_permission(permission)
        self._access.require(Permission.ADMIN, action="access.perm.remove")
        with self._database.session(write=True) as session:
            group_row = _get_group(session, group)
            for entry in list(group_row.permissions):
                if entry.permission == perm.value:
                    group_row.permissions.remove(entry)
            self._record(session, "access.perm.remove", group=group, permission=perm.value)
            session.flush()
            return _group_info(group_row)

    def set_members(self, group: str, users: list[str]) -> GroupInfo:
        """Make ``users`` (local users; hub users' groups come from the hub) the members."""
        self._access.require(Permission.ADMIN, action="access.members")
        with self._database.session(write=True) as session:
            group_row = _get_group(session, group, create=True)
            rows = list(session.scalars(select(User).where(User.name.in_(users))))
            missing = sorted(set(users) - {u.name for u in rows})
            if missing:
                raise NotFound(f"unknown users (they must connect once first): {missing}")
            group_row.users = rows
            self._record(session, "access.members", group=group, users=sorted(users))
            session.flush()
            return _group_info(group_row)

    # -- users, audit, site ----------------------------------------------------------
    def users(self) -> list[UserInfo]:
        """Every user who ever connected, sorted by name."""
        self._access.require(Permission.ADMIN, action="users.list")
        with self._database.session(write=True) as session:
            return [
                UserInfo(
                    name=u.name,
                    source=u.source,
                    admin=Permission.ADMIN in effective_permissions(session, u),
                    groups=tuple(g.name for g in u.groups),
                    last_seen_at=u.last_seen_at,
                )
                for u in session.scalars(select(User).order_by(User.name))
            ]

    def audit_events(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Audit rows, oldest first, optionally filtered."""
        self._access.require(Permission.ADMIN, action="audit.read")
        with self._database.session(write=True) as session:
            return read_events(session, user=user, action=action, since=since, limit=limit)

    def usage(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        user: str | None = None,
        node: str | None = None,
    ) -> list[UsageRow]:
        """DICOMweb use per user and node (requests, instances, bytes of QIDO, WADO and
        STOW; denied and failed requests) from ``since`` to ``until`` (naive times are
        UTC), summed from the audit log."""
        self._access.require(Permission.ADMIN, action="usage.read")
        since, until = _utc(since), _utc(until)
        if since is not None and until is not None and until <= since:
            raise InputError("'to' must be later than 'from'")
        with self._database.session() as session:
            return dicomweb_usage(session, since=since, until=until, user=user, node=node)

    def export_audit(self, target: str | Path | IO[str], *, since: datetime | None = None) -> int:
        """Write the audit log (from ``since``) as CSV; returns the number of rows."""
        self._access.require(Permission.ADMIN, action="audit.export")
        with self._database.session(write=True) as session:
            events = read_events(session, since=since)
            self._record(session, "audit.export", rows=len(events))
        return write_csv(events, target)

    def set_maintenance(self, on: bool, *, message: str | None = None) -> SiteStatus:
        """Turn maintenance mode on or off; ``message`` replaces the announcement if given."""
        self._access.require(Permission.ADMIN, action="site.maintenance")
        with self._database.session(write=True) as session:
            current = read_site_status(session)
            announcement = current.announcement if message is None else message
            status = write_site_status(
                session, maintenance=on, announcement=announcement, by=self._access.user
            )
            self._record(session, "site.maintenance", on=on, announcement=announcement)
            return status

    def set_announcement(self, message: str) -> SiteStatus:
        """Set (or clear with ``""``) the announcement shown to every user."""
        self._access.require(Permission.ADMIN, action="site.announcement")
        with self._database.session(write=True) as session:
            current = read_site_status(session)
            status = write_site_status(
                session,
                maintenance=current.maintenance,
                announcement=message,
                by=self._access.user,
            )
            self._record(session, "site.announcement", announcement=message)
            return status

    def _record(
        self, session: Session, action: str, *, node: str | None = None, **details: object
    ) -> None:
        record(session, self._access.user, action, node=node, details=details)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _get_group(session: Session, name: str, *, create: bool = False) -> Group:
    name = name.strip()
    if not name:
        raise InputError("a group needs a name")
    group = session.scalars(select(Group).where(Group.name == name)).one_or_none()
    if group is None:
        if not create:
            raise NotFound(f"no group named {name!r}")
        group = Group(name=name)
        session.add(group)
        session.flush()
    return group


def _group_info(group: Group) -> GroupInfo:
    nodes = {
        a.node.name: frozenset(
            r
            for r, held in ((NodeRole.SOURCE, a.source), (NodeRole.DESTINATION, a.destination))
            if held
        )
        for a in group.node_access
    }
    return GroupInfo(
        name=group.name,
        users=tuple(u.name for u in group.users),
        permissions=tuple(p.permission for p in group.permissions),
        nodes=dict(sorted(nodes.items())),
    )
