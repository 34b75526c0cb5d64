"""Enforcement: the one place that decides whether a user may do something.

Every entry point (the facade, the CLI, the widgets, the REST service and a worker when a
task starts) holds an :class:`Access` for its user and calls it before acting. Nothing is
cached: each check reads the database, so a permission revoked while a job waits in the
queue stops the job when its worker checks again.

A refusal raises :class:`~adit_workbench.errors.PermissionDenied` (or
:class:`~adit_workbench.errors.NodeAccessDenied`) naming what is missing, and appends an
audit row with outcome ``denied`` in a transaction of its own, so the row survives the
caller's rollback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import MaintenanceMode, NodeAccessDenied, NotFound, PermissionDenied
from ..store.access import GroupPermission, Membership, NodeAccess, User
from ..store.models import Node
from .audit import Outcome, record
from .permissions import (
    NodeRole,
    Permission,
    UserProfile,
    expand,
    parse_permission,
    parse_role,
)
from .site import SiteStatus, read_site_status

if TYPE_CHECKING:
    from ..store import Database
    from .admin import AccessAdmin
    from .tokens import TokenManager

__all__ = ["Access", "UserProfile", "effective_permissions", "find_user", "node_roles"]


def find_user(session: Session, name: str) -> User | None:
    """The user row named ``name``, if any."""
    return session.scalars(select(User).where(User.name == name)).one_or_none()


def effective_permissions(session: Session, user: User | None) -> frozenset[Permission]:
    """The union of the user's groups' permissions; all of them for a hub admin."""
    if user is None:
        return frozenset()
    if user.hub_admin:
        return frozenset(Permission)
    granted = session.scalars(
        select(GroupPermission.permission)
        .join(Membership, Membership.group_id == GroupPermission.group_id)
        .where(Membership.user_id == user.id)
    )
    return expand(granted)


def node_roles(
    session: Session, user: User | None, *, admin: bool = False
) -> dict[str, frozenset[NodeRole]]:
    """Node name → the roles the user's groups may use it in (admins: every node, both)."""
    if admin:
        names = session.scalars(select(Node.name).order_by(Node.name))
        return {name: frozenset(NodeRole) for name in names}
    if user is None:
        return {}
    rows = session.execute(
        select(Node.name, NodeAccess.source, NodeAccess.destination)
        .join(NodeAccess, NodeAccess.node_id == Node.id)
        .join(Membership, Membership.group_id == NodeAccess.group_id)
        .where(Membership.user_id == user.id)
    )
    roles: dict[str, set[NodeRole]] = {}
    for name, source, destination in rows:
        held = roles.setdefault(name, set())
        if source:
            held.add(NodeRole.SOURCE)
        if destination:
            held.add(NodeRole.DESTINATION)
    return {name: frozenset(held) for name, held in sorted(roles.items())}


class Access:
    """Permission checks and auditing for one user of one database.

    Parameters
    ----------
    database:
        The workbench database.
    user:
        The user's name, already authenticated (by :func:`~adit_workbench.access.sign_in`,
        a token, or the job that names its owner). An unknown name has no permissions.
    """

    def __init__(self, database: Database, user: str) -> None:
        self._database = database
        self._user = user

    @property
    def user(self) -> str:
        """The user these checks are for."""
        return self._user

    @property
    def database(self) -> Database:
        """The database the checks read."""
        return self._database

    def __repr__(self) -> str:
        return f"<Access user={self._user!r}>"

    # -- reading ----------------------------------------------------------------------
    def profile(self) -> UserProfile:
        """The user's groups, permissions and usable nodes, as of now."""
        with self._database.session() as session:
            row = find_user(session, self._user)
            permissions = effective_permissions(session, row)
            groups = tuple(g.name for g in row.groups) if row is not None else ()
            admin = Permission.ADMIN in permissions
            return UserProfile(
                self._user, groups, permissions, node_roles(session, row, admin=admin)
            )

    def permissions(self) -> frozenset[Permission]:
        """The user's effective permissions."""
        with self._database.session() as session:
            return effective_permissions(session, find_user(session, self._user))

    def has(self, permission: Permission | str) -> bool:
        """Whether the user holds ``permission`` (no audit row)."""
        return parse_permission(permission) in self.permissions()

    @property
    def is_admin(self) -> bool:
        """Whether the user holds the admin permission."""
        return self.has(Permission.ADMIN)

    def node_roles(self) -> dict[str, frozenset[NodeRole]]:
        """Node name → roles the user may use it in."""
        with self._database.session() as session:
            row = find_user(session, self._user)
            admin = Permission.ADMIN in effective_permissions(session, row)
            return node_roles(session, row, admin=admin)

    def visible_nodes(self, role: NodeRole | str | None = None) -> list[str]:
        """Names of the nodes the user may use (in ``role``, or in any role), sorted."""
        wanted = parse_role(role) if role is not None else None
        return [
            name
            for name, roles in self.node_roles().items()
            if roles and (wanted is None or wanted in roles)
        ]

    def site_status(self) -> SiteStatus:
        """Maintenance mode and announcement (readable by everyone)."""
        with self._database.session() as session:
            return read_site_status(session)

    # -- checks -----------------------------------------------------------------------
    def require(
        self,
        permission: Permission | str,
        *,
        action: str | None = None,
        node: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Raise :class:`PermissionDenied` (and audit it) unless the user holds ``permission``."""
        wanted = parse_permission(permission)
        if wanted in self.permissions():
            return
        self._denied(action or f"require.{wanted.value}", node, details, permission=wanted.value)
        raise PermissionDenied(
            f"user {self._user!r} lacks the permission {wanted.value!r}"
            + (f" needed for {action}" if action else "")
            + f": ask an admin (adit-workbench access perm add GROUP {wanted.value})",
            permission=wanted.value,
        )

    def require_node(
        self,
        name: str,
        role: NodeRole | str | None = None,
        *,
        action: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Raise :class:`NodeAccessDenied` (and audit it) unless the user may use node ``name``
        in ``role`` (any role when ``None``).

        A node that does not exist is refused the same way, so that the message does not
        tell users about nodes they may not see; only admins get NotFound.
        """
        wanted = parse_role(role) if role is not None else None
        with self._database.session() as session:
            row = find_user(session, self._user)
            admin = Permission.ADMIN in effective_permissions(session, row)
            roles = node_roles(session, row, admin=admin).get(name, frozenset())
        if roles and (wanted is None or wanted in roles):
            return
        if admin:  # admins see every node, so for them a missing node is just missing
            raise NotFound(f"no node named {name!r}")
        how = f"as a {wanted.value}" if wanted else "at all"
        self._denied(
            action or "require.node", name, details, permission=f"{wanted or 'any'} access"
        )
        flag = f" --{wanted.value}" if wanted else " --source"
        raise NodeAccessDenied(
            f"user {self._user!r} may not use node {name!r} {how}: "
            f"ask an admin (adit-workbench access grant GROUP {name}{flag})",
            node=name,
            role=wanted.value if wanted else None,
        )

    def require_accepting_jobs(self, *, action: str = "job.create") -> None:
        """Raise :class:`MaintenanceMode` (and audit it) while the site is in maintenance."""
        status = self.site_status()
        if status.maintenance:
            self._denied(action, None, None, reason="maintenance")
            raise MaintenanceMode(status.announcement)

    # -- audit ------------------------------------------------------------------------
    def audit(
        self,
        action: str,
        *,
        node: str | None = None,
        details: Mapping[str, Any] | None = None,
        outcome: Outcome | str = Outcome.OK,
    ) -> None:
        """Append an audit row for this user (own transaction). Details stay in the database."""
        with self._database.session() as session:
            record(session, self._user, action, node=node, details=details, outcome=outcome)

    @contextmanager
    def audited(
        self,
        action: str,
        *,
        node: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Audit the enclosed operation: ``ok`` when it returns, ``failed`` when it raises.

        Yields the details dict, so that the operation can add what it learned (counts,
        UIDs) before the row is written. Only the error's type is recorded on failure.
        """
        collected: dict[str, Any] = dict(details or {})
        try:
            yield collected
        except BaseException as exc:
            collected["error"] = type(exc).__name__
            self.audit(action, node=node, details=collected, outcome=Outcome.FAILED)
            raise
        self.audit(action, node=node, details=collected)

    def _denied(
        self,
        action: str,
        node: str | None,
        details: Mapping[str, Any] | None,
        **why: str,
    ) -> None:
        self.audit(action, node=node, details={**(details or {}), **why}, outcome=Outcome.DENIED)

    # -- sub-APIs ---------------------------------------------------------------------
    @property
    def admin(self) -> AccessAdmin:
        """Group, node-access, permission, user, audit and site management (admins only)."""
        from .admin import AccessAdmin

        return AccessAdmin(self)

    @property
    def tokens(self) -> TokenManager:
        """The user's own API tokens."""
        from .tokens import TokenManager

        return TokenManager(self)
