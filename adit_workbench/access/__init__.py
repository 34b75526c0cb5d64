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

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .admin import AccessAdmin, GroupInfo, UserInfo
    from .audit import AuditRecord, Outcome
    from .control import Access
    from .identity import (
        Identity,
        IdentitySource,
        hub_identity,
        local_identity,
        operator_identity,
        resolve_identity,
    )
    from .permissions import APP_PERMISSIONS, NodeRole, Permission, UserProfile
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

#: Where each public name lives, imported on first use (PEP 562): the remote client and
#: the widgets need ``Permission`` and ``UserProfile``, not SQLAlchemy and the store.
_WHERE = {
    "ADMINS_GROUP": ".sync",
    "APP_PERMISSIONS": ".permissions",
    "Access": ".control",
    "AccessAdmin": ".admin",
    "AuditRecord": ".audit",
    "GroupInfo": ".admin",
    "Identity": ".identity",
    "IdentitySource": ".identity",
    "NewToken": ".tokens",
    "NodeRole": ".permissions",
    "Outcome": ".audit",
    "Permission": ".permissions",
    "SiteStatus": ".site",
    "TokenInfo": ".tokens",
    "TokenManager": ".tokens",
    "UserInfo": ".admin",
    "UserProfile": ".permissions",
    "authenticate_token": ".tokens",
    "hub_identity": ".identity",
    "local_identity": ".identity",
    "operator_identity": ".identity",
    "resolve_identity": ".identity",
    "sign_in": ".sync",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
