"""``adit-workbench access | users | tokens | audit``: who may do what, and the record of it.

The CLI acts as the user :func:`~adit_workbench.workbench.connect` resolves: the local OS
user on an embedded database, the operator on the service's account, or, with
``ADIT_WB_SERVICE_URL`` (a hub terminal, a script with a token), the token's user as the
service knows it. Every command goes through the access layer, which checks the
permission and writes the audit row; as a client of the service, through its
``/api/tokens`` and ``/api/admin/…`` routes, where the service runs that same layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import app
from ._common import ID, LazyChoice, clean, echo_table, open_workbench

if TYPE_CHECKING:
    from ..access import Access, GroupInfo, NodeRole


def _expiry_choices() -> Iterable[str]:
    from ..access.tokens import EXPIRY_DAYS

    return [str(d) if d else "never" for d in EXPIRY_DAYS]


def _permission_choices() -> Iterable[str]:
    from ..access import Permission

    return [p.value for p in Permission]


def _access() -> Access:
    return open_workbench().access


def _table(rows: Sequence[Sequence[str]]) -> None:
    echo_table(rows)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def _roles(roles: frozenset[NodeRole]) -> str:
    from ..access import NodeRole

    return "+".join(r.value for r in NodeRole if r in roles)


# -- access -------------------------------------------------------------------------------
@app.group("access")
def access_group() -> None:
    """Node access and permissions of groups (admins), maintenance mode."""


@access_group.command("grant")
@click.argument("group")
@click.argument("node")
@click.option("--source", is_flag=True, help="May query and retrieve from NODE.")
@click.option("--destination", is_flag=True, help="May send studies to NODE.")
def grant(group: str, node: str, source: bool, destination: bool) -> None:
    """Let GROUP use NODE (as source and destination unless one is given)."""
    info = _access().admin.grant(group, node, source=source, destination=destination)
    click.echo(clean(f"{group}: {node} as {_roles(info.nodes[node])}"))


@access_group.command("revoke")
@click.argument("group")
@click.argument("node")
def revoke(group: str, node: str) -> None:
    """Take every role on NODE away from GROUP."""
    _access().admin.revoke(group, node)
    click.echo(clean(f"{group}: no longer uses {node}"))


@access_group.group("perm")
def perm() -> None:
    """Add or remove a permission of a group."""


_PERMISSION = LazyChoice(_permission_choices, case_sensitive=False)


@perm.command("add")
@click.argument("group")
@click.argument("permission", type=_PERMISSION)
def perm_add(group: str, permission: str) -> None:
    """Give GROUP a PERMISSION (the group is created if needed)."""
    info = _access().admin.add_permission(group, permission)
    click.echo(clean(f"{group}: {', '.join(info.permissions)}"))


@perm.command("remove")
@click.argument("group")
@click.argument("permission", type=_PERMISSION)
def perm_remove(group: str, permission: str) -> None:
    """Take PERMISSION away from GROUP."""
    info = _access().admin.remove_permission(group, permission)
    click.echo(clean(f"{group}: {', '.join(info.permissions) or '(no permissions)'}"))


@access_group.command("show")
@click.argument("group", required=False)
def show(group: str | None) -> None:
    """Groups with members, permissions and nodes (or one GROUP)."""
    access = _access()
    groups = [access.admin.group(group)] if group else access.admin.groups()
    if not groups:
        click.echo("no groups yet (see: adit-workbench access grant --help)")
    for info in groups:
        _show_group(info)
    status = access.site_status()
    if status.maintenance or status.announcement:
        state = "ON" if status.maintenance else "off"
        click.echo(clean(f"maintenance: {state}  announcement: {status.announcement or '-'}"))


def _show_group(info: GroupInfo) -> None:
    click.echo(clean(info.name))
    click.echo(clean(f"  users:       {', '.join(info.users) or '-'}"))
    click.echo(clean(f"  permissions: {', '.join(info.permissions) or '-'}"))
    nodes = ", ".join(f"{n} ({_roles(r)})" for n, r in info.nodes.items())
    click.echo(clean(f"  nodes:       {nodes or '-'}"))


@access_group.command("maintenance")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--message", default=None, help="Announcement shown to users (kept if omitted).")
def maintenance(state: str, message: str | None) -> None:
    """Turn maintenance mode on (no new jobs) or off."""
    status = _access().admin.set_maintenance(state == "on", message=message)
    text = f"maintenance {'on' if status.maintenance else 'off'}"
    if status.announcement:
        text += f": {status.announcement}"
    click.echo(clean(text))


# -- users --------------------------------------------------------------------------------
@app.group("users")
def users_group() -> None:
    """Users who have connected (admins)."""


@users_group.command("list")
def list_users() -> None:
    """List users with their groups and when they were last seen."""
    users = _access().admin.users()
    rows = [("NAME", "SOURCE", "ADMIN", "GROUPS", "LAST SEEN")]
    for u in users:
        admin = "yes" if u.admin else "no"
        rows.append((u.name, u.source, admin, ",".join(u.groups) or "-", _when(u.last_seen_at)))
    _table(rows)


# -- tokens -------------------------------------------------------------------------------
@app.group("tokens")
def tokens_group() -> None:
    """Your API tokens for scripts and the REST service."""


@tokens_group.command("create")
@click.option(
    "--expires",
    type=LazyChoice(_expiry_choices),
    default="30",
    show_default=True,
    help="Days until it expires ('never' needs the never_expiring_token permission).",
)
@click.option("--description", default="", help="What the token is for.")
def create_token(expires: str, description: str) -> None:
    """Create a token; it is shown only now."""
    new = _access().tokens.create(expires=expires, description=description)
    click.echo(new.token)
    until = _when(new.info.expires_at) if new.info.expires_at else "never"
    click.echo(f"token {new.info.id} expires {until}: copy it now, it is not shown again", err=True)


@tokens_group.command("list")
@click.option("--all", "all_users", is_flag=True, help="Every user's tokens (admins).")
def list_tokens(all_users: bool) -> None:
    """List tokens (never their secrets)."""
    tokens = _access().tokens.list(all_users=all_users)
    if not tokens:
        click.echo("no tokens (see: adit-workbench tokens create --help)")
        return
    rows = [("ID", "USER", "PREFIX", "CREATED", "EXPIRES", "LAST USED", "STATE", "DESCRIPTION")]
    for t in tokens:
        state = "revoked" if t.revoked_at else ("active" if t.active else "expired")
        rows.append(
            (
                str(t.id),
                t.user,
                t.prefix,
                _when(t.created_at),
                _when(t.expires_at) if t.expires_at else "never",
                _when(t.last_used_at),
                state,
                t.description,
            )
        )
    _table(rows)


@tokens_group.command("revoke")
@click.argument("token_id", metavar="ID", type=ID)
def revoke_token(token_id: int) -> None:
    """Revoke token ID (yours; admins: anyone's)."""
    _access().tokens.revoke(token_id)
    click.echo(f"token {token_id} revoked")


# -- audit --------------------------------------------------------------------------------
@app.group("audit")
def audit_group() -> None:
    """The audit log (admins)."""


@audit_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="Only events from this UTC date or time on.",
)
def export_audit(file: Path, since: datetime | None) -> None:
    """Write the audit log to FILE as CSV (it holds identifying values: store it safely)."""
    start = since.replace(tzinfo=UTC) if since else None
    count = _access().admin.export_audit(file, since=start)
    click.echo(clean(f"{count} events written to {file}"))
