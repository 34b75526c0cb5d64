"""Models of the access layer: users, groups, node access, permissions, tokens, audit, site.

Only rows live here; the rules (who may do what, how tokens are checked, what is audited)
are in :mod:`adit_workbench.access`. Table names avoid ``user`` and ``group``, which are
reserved words in PostgreSQL.

* ``app_user`` / ``app_group`` / ``group_membership``: who is in which group. Hub users
  and their memberships are mirrored from JupyterHub on every ``connect()``.
* ``node_access``: a group may use a node as a source, a destination or both.
* ``group_permission``: a group's permissions (names from
  :class:`adit_workbench.access.Permission`; stored as text so that adding one needs no
  migration).
* ``api_token``: a workbench API token, stored as a SHA-256 hash with a random public
  prefix for lookup; the token itself is never stored.
* ``audit_event``: the append-only audit log. It names users and nodes by value, not by
  foreign key, so that removing a user or a node never rewrites history. Database
  triggers (migration 0002) refuse UPDATE and DELETE on both back-ends.
* ``site_settings``: one row (id 1) with maintenance mode and the announcement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .models import NAME_LENGTH, Base, Node, utcnow

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Group",
    "GroupPermission",
    "Membership",
    "NodeAccess",
    "SiteSettings",
    "User",
]

#: JupyterHub user and group names may be longer than node names.
PRINCIPAL_LENGTH = 255
PERMISSION_LENGTH = 64
TOKEN_PREFIX_LENGTH = 16
SHA256_HEX_LENGTH = 64


class User(Base):
    """A person known to the workbench (a hub user or a local OS user)."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(PRINCIPAL_LENGTH), unique=True)
    #: "jupyterhub" or "local": where the identity was last verified.
    source: Mapped[str] = mapped_column(String(16), default="local")
    #: The hub's admin flag, mirrored on connect; makes the user an admin here too.
    hub_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column()

    groups: Mapped[list[Group]] = relationship(
        secondary="group_membership", back_populates="users", order_by="Group.name"
    )

    def __repr__(self) -> str:
        return f"<User {self.name!r}>"


class Group(Base):
    """A group of users; node access and permissions are granted to groups only."""

    __tablename__ = "app_group"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(PRINCIPAL_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(
        secondary="group_membership", back_populates="groups", order_by="User.name"
    )
    permissions: Mapped[list[GroupPermission]] = relationship(
        cascade="all, delete-orphan", order_by="GroupPermission.permission"
    )
    node_access: Mapped[list[NodeAccess]] = relationship(cascade="all, delete-orphan")

    def __repr__(self) -> str:
        return f"<Group {self.name!r}>"


class Membership(Base):
    """User ``user_id`` is in group ``group_id``."""

    __tablename__ = "group_membership"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("app_group.id", ondelete="CASCADE"), primary_key=True
    )


class GroupPermission(Base):
    """Group ``group_id`` holds ``permission``."""

    __tablename__ = "group_permission"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("app_group.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(PERMISSION_LENGTH), primary_key=True)


class NodeAccess(Base):
    """Group ``group_id`` may use node ``node_id`` as a source and/or a destination."""

    __tablename__ = "node_access"
    __table_args__: tuple[Any, ...] = (
        UniqueConstraint("group_id", "node_id", name="uq_node_access_group_id_node_id"),
        CheckConstraint("source OR destination", name="some_role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("app_group.id", ondelete="CASCADE"))
    node_id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), index=True)
    source: Mapped[bool] = mapped_column(Boolean, default=False)
    destination: Mapped[bool] = mapped_column(Boolean, default=False)

    node: Mapped[Node] = relationship()


class ApiToken(Base):
    """A workbench API token of one user, known only by its hash."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    #: Random and public (shown in listings); narrows the lookup to one row.
    prefix: Mapped[str] = mapped_column(String(TOKEN_PREFIX_LENGTH), unique=True)
    token_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} {self.prefix}…>"


class AuditEvent(Base):
    """One audited action: who, when, what, outcome. Never updated, never deleted."""

    __tablename__ = "audit_event"
    __table_args__: tuple[Any, ...] = (
        CheckConstraint("outcome IN ('ok', 'denied', 'failed')", name="outcome"),
        Index("ix_audit_event_user_name_at", "user_name", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_name: Mapped[str] = mapped_column(String(PRINCIPAL_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    node: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    outcome: Mapped[str] = mapped_column(String(16))
    #: May hold identifying values (query filters, UIDs): they stay in the database.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def __repr__(self) -> str:
        # No details: they may identify a patient.
        return f"<AuditEvent {self.id} {self.action} {self.outcome} by {self.user_name!r}>"


class SiteSettings(Base):
    """Site-wide state set by admins: maintenance mode and the announcement (one row)."""

    __tablename__ = "site_settings"
    __table_args__: tuple[Any, ...] = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    announcement: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(PRINCIPAL_LENGTH), default="")
