"""Routes for the caller, tokens, access administration and the site.

``/api/me`` and ``/api/site`` are for everyone signed in; ``/api/tokens`` manages the
caller's own workbench API tokens; ``/api/admin/…`` calls
:class:`~adit_workbench.access.AccessAdmin`, which requires ``admin`` on every method
(the routes add no check of their own, so there is one place that decides).
"""

from __future__ import annotations

import io
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from ..access import GroupInfo, TokenInfo
from ..errors import InputError
from .app import Caller, caller
from .models import GrantRequest, MembersRequest, PermissionRequest, SiteRequest, TokenRequest

__all__ = ["router"]

router = APIRouter()

GroupName = Annotated[str, Path(max_length=64)]


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_json(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value


def _group(info: GroupInfo) -> dict[str, Any]:
    return _json(asdict(info))


def _token(info: TokenInfo) -> dict[str, Any]:
    return {**_json(asdict(info)), "active": info.active}


@router.get("/health", tags=["site"])
def health() -> dict[str, str]:
    """Liveness (no authentication, nothing about users or nodes)."""
    return {"status": "ok"}


@router.get("/me", tags=["site"])
def me(who: Caller = Depends(caller)) -> dict[str, Any]:
    """The caller's name, groups, permissions and usable nodes."""
    profile = who.access.profile()
    return {
        "user": profile.name,
        "groups": list(profile.groups),
        "permissions": sorted(p.value for p in profile.permissions),
        "admin": profile.is_admin,
        "nodes": {n: sorted(r.value for r in roles) for n, roles in profile.nodes.items()},
    }


@router.get("/site", tags=["site"])
def site(who: Caller = Depends(caller)) -> dict[str, Any]:
    """Maintenance mode and the announcement."""
    return _json(asdict(who.access.site_status()))


# -- tokens -----------------------------------------------------------------------------
@router.get("/tokens", tags=["tokens"])
def list_tokens(who: Caller = Depends(caller), all_users: bool = False) -> list[dict[str, Any]]:
    """The caller's tokens (every user's for admins with ``all_users``); never the secret."""
    return [_token(t) for t in who.access.tokens.list(all_users=all_users)]


@router.post("/tokens", status_code=201, tags=["tokens"])
def create_token(body: TokenRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
    """A new token; the secret is in this answer only."""
    new = who.access.tokens.create(expires=body.expires, description=body.description)
    return {**_token(new.info), "token": new.token}


@router.delete("/tokens/{token_id}", tags=["tokens"])
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**62)], who: Caller = Depends(caller)
) -> dict[str, Any]:
    """Revoke one of the caller's tokens (admins: anyone's)."""
    return _token(who.access.tokens.revoke(token_id))


# -- administration ---------------------------------------------------------------------
@router.get("/admin/groups", tags=["admin"])
def groups(who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    """Every group with members, permissions and node access."""
    return [_group(g) for g in who.access.admin.groups()]


@router.get("/admin/groups/{group}", tags=["admin"])
def group(group: GroupName, who: Caller = Depends(caller)) -> dict[str, Any]:
    """One group."""
    return _group(who.access.admin.group(group))


@router.post("/admin/groups/{group}/nodes", tags=["admin"])
def grant(group: GroupName, body: GrantRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Let a group use a node as a source and/or destination (both if neither given)."""
    info = who.access.admin.grant(
        group, body.node, source=body.source, destination=body.destination
    )
    return _group(info)


@router.delete("/admin/groups/{group}/nodes/{node}", tags=["admin"])
def revoke(
    group: GroupName,
    node: Annotated[str, Path(max_length=64)],
    who: Caller = Depends(caller),
    role: Annotated[str | None, Query(pattern="^(source|destination)$")] = None,
) -> dict[str, Any]:
    """Take a role (default: every role) on a node away from a group."""
    return _group(who.access.admin.revoke(group, node, role))


@router.post("/admin/groups/{group}/permissions", tags=["admin"])
def add_permission(
    group: GroupName, body: PermissionRequest, who: Caller = Depends(caller)
) -> dict[str, Any]:
    """Give a group a permission."""
    return _group(who.access.admin.add_permission(group, body.permission))


@router.delete("/admin/groups/{group}/permissions/{permission}", tags=["admin"])
def remove_permission(
    group: GroupName,
    permission: Annotated[str, Path(max_length=64)],
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """Take a permission away from a group."""
    return _group(who.access.admin.remove_permission(group, permission))


@router.put("/admin/groups/{group}/members", tags=["admin"])
def set_members(
    group: GroupName, body: MembersRequest, who: Caller = Depends(caller)
) -> dict[str, Any]:
    """Set the members of a group (local users; hub users' groups come from the hub)."""
    return _group(who.access.admin.set_members(group, list(body.users)))


@router.get("/admin/users", tags=["admin"])
def users(who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    """Every user who ever connected."""
    return [_json(asdict(u)) for u in who.access.admin.users()]


@router.get("/admin/audit", tags=["admin"])
def audit(
    who: Caller = Depends(caller),
    since: datetime | None = None,
) -> Response:
    """The audit log as CSV (from ``since``, an ISO date-time)."""
    out = io.StringIO()
    who.access.admin.export_audit(out, since=since)
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


@router.get("/admin/audit/events", tags=["admin"])
def audit_events(
    who: Caller = Depends(caller),
    user: Annotated[str | None, Query(max_length=256)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> list[dict[str, Any]]:
    """Audit rows as JSON, oldest first, optionally filtered (the admin dashboard)."""
    events = who.access.admin.audit_events(user=user, action=action, since=since, limit=limit)
    return [_json(asdict(event)) for event in events]


@router.get("/admin/usage", tags=["admin"])
def usage(
    who: Caller = Depends(caller),
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    user: Annotated[str | None, Query(max_length=256)] = None,
    node: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """DICOMweb use per user and node: QIDO, WADO and STOW requests, instances and bytes,
    denied and failed requests, from ``from`` (inclusive) to ``to`` (exclusive), ISO
    dates or date-times (UTC unless they carry an offset)."""
    rows = who.access.admin.usage(since=since, until=until, user=user, node=node)
    return {
        "from": _json(since),
        "to": _json(until),
        "rows": [asdict(row) for row in rows],
    }


@router.put("/admin/site", tags=["admin"])
def set_site(body: SiteRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Turn maintenance mode on or off and/or set the announcement."""
    admin = who.access.admin
    if body.maintenance is None and body.announcement is None:
        raise InputError("give 'maintenance' and/or 'announcement'")
    if body.maintenance is not None:
        status = admin.set_maintenance(body.maintenance, message=body.announcement)
    else:
        status = admin.set_announcement(body.announcement or "")
    return _json(asdict(status))
