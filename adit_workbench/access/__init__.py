"""Access: identity, groups, node access, permissions, API tokens, audit, maintenance.

Every entry point (facade, CLI, widgets, REST service, workers) checks here::

    identity = resolve_identity()                  # hub user (verified), operator or OS user
    access = sign_in(database, identity, embedded=settings.is_embedded_database)
    access.require(Permission.BATCH_QUERY)         # PermissionDenied + audit row if missing
    access.require_node("PACS", "source")          # NodeAccessDenied + audit row if missing
    access.require_accepting_jobs()                # MaintenanceMode while admins work
    access.audit("query", node="PACS", details={"level": "STUDY", "filters": {...}})

Admin operations live on ``access.admin``; the user's API tokens on ``access.tokens``;
scripts and the REST service authenticate with :func:`authenticate_token`.
"""

from __future__ import annotations

from .admin import AccessAdmin, GroupInfo, UserInfo
from .audit import AuditRecord, Outcome
from .control import Access, UserProfile
from .identity import (
    Identity,
    IdentitySource,
    hub_identity,
    local_identity,
    operator_identity,
    resolve_identity,
)
from .permissions import APP_PERMISSIONS, NodeRole, Permission
from .site import SiteStatus
from .sync import ADMINS_GROUP, sign_in
from .tokens import NewToken, TokenInfo, TokenManager, authenticate_token

__all__ = [
    "ADMINS_GROUP",
    "APP_PERMISSIONS",
    "Access",
    "AccessAdmin",
    "AuditRecord",
    "GroupInfo",
    "Identity",
    "IdentitySource",
    "NewToken",
    "NodeRole",
    "Outcome",
    "Permission",
    "SiteStatus",
    "TokenInfo",
    "TokenManager",
    "UserInfo",
    "UserProfile",
    "authenticate_token",
    "hub_identity",
    "local_identity",
    "operator_identity",
    "resolve_identity",
    "sign_in",
]
