"""Signing in: record the verified identity and mirror its hub groups into the database.

Membership is managed in one place. For a hub user that place is JupyterHub: on each
``connect()`` the user's groups here become exactly the hub's groups (missing groups are
created empty; an admin then grants them nodes and permissions). Local users' groups are
managed with the CLI.

A local identity (the OS user, ``$USER``) is the calling process's own claim: it is
accepted on SQLite (the embedded single-user database) and refused on a shared database,
which people reach through the workbench service instead.

Bootstrap: the user of an embedded database is its admin (member of the ``admins`` group,
which holds every permission). On a shared database the first operator (or, on SQLite,
local user) to sign in while nobody is admin becomes admin, so that a fresh deployment
can be set up from the service's account; hub admins are admins through the hub's flag.
"""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ..errors import PermissionDenied, StoreError
from ..store import Database
from ..store.access import Group, GroupPermission, Membership, User
from ..store.models import utcnow
from .audit import record
from .control import Access, find_user
from .identity import Identity, IdentitySource
from .permissions import Permission

__all__ = ["ADMINS_GROUP", "sign_in"]

#: Group created by the bootstrap, holding every permission.
ADMINS_GROUP = "admins"


def sign_in(database: Database, identity: Identity, *, embedded: bool) -> Access:
    """Record ``identity`` (mirroring hub groups) and return the :class:`Access` for it.

    Parameters
    ----------
    database:
        The workbench database, at the head revision.
    identity:
        A verified identity (:func:`~adit_workbench.access.resolve_identity`).
    embedded:
        True for the embedded per-user database, whose user is always its admin.

    Raises
    ------
    PermissionDenied
        A local (OS user) identity on a shared database.
    """
    if identity.source is IdentitySource.LOCAL and not database.is_sqlite:
        raise PermissionDenied(
            f"the OS user {identity.name!r} is not an identity on a shared database: "
            "go through the workbench service (set ADIT_WB_SERVICE_URL and "
            "ADIT_WB_API_TOKEN, or work in a notebook on the hub); on the service's own "
            "account set ADIT_WB_OPERATOR"
        )
    # Two kernels of one user connecting at once may both create a group or the user;
    # the loser's unique violation is resolved by simply doing it again.
    for attempt in range(3):
        try:
            with database.session() as session:
                _sync(session, identity, embedded=embedded)
            break
        except StoreError:
            if attempt == 2:
                raise
    return Access(database, identity.name)


def _sync(session: Session, identity: Identity, *, embedded: bool) -> None:
    user = find_user(session, identity.name)
    if user is None:
        user = User(name=identity.name, source=identity.source.value, hub_admin=False)
        session.add(user)
        session.flush()
    hub = identity.source is IdentitySource.JUPYTERHUB
    user.source = identity.source.value
    user.last_seen_at = utcnow()
    if hub and user.hub_admin != identity.admin:
        record(session, user.name, "user.hub_admin", details={"admin": identity.admin})
    user.hub_admin = identity.admin if hub else False

    make_admin = embedded or (not hub and not _anyone_is_admin(session))
    if make_admin:
        _ensure_admins_group(session)
    current = {g.name for g in user.groups}
    if hub:
        wanted = set(identity.groups) | ({ADMINS_GROUP} if make_admin else set())
    else:
        wanted = current | ({ADMINS_GROUP} if make_admin else set())
    if wanted == current:
        return
    groups = {g.name: g for g in session.scalars(select(Group).where(Group.name.in_(wanted)))}
    for name in sorted(wanted - groups.keys()):
        groups[name] = Group(name=name)
        session.add(groups[name])
    user.groups = [groups[name] for name in sorted(wanted)]
    record(
        session,
        user.name,
        "membership.sync",
        details={
            "source": identity.source.value,
            "added": sorted(wanted - current),
            "removed": sorted(current - wanted),
        },
    )


def _ensure_admins_group(session: Session) -> Group:
    group = session.scalars(select(Group).where(Group.name == ADMINS_GROUP)).one_or_none()
    if group is None:
        group = Group(name=ADMINS_GROUP)
        session.add(group)
        session.flush()
    held = {p.permission for p in group.permissions}
    for permission in Permission:
        if permission.value not in held:
            group.permissions.append(GroupPermission(permission=permission.value))
    return group


def _anyone_is_admin(session: Session) -> bool:
    hub_admin = select(User.id).where(User.hub_admin.is_(True))
    group_admin = (
        select(Membership.user_id)
        .join(GroupPermission, GroupPermission.group_id == Membership.group_id)
        .where(GroupPermission.permission == Permission.ADMIN.value)
    )
    return bool(session.scalar(select(exists(hub_admin) | exists(group_admin))))
