"""Admin: a group's permissions and node access, its members, the site status, the audit log.

Built on ``wb.access.admin`` (every call there checks the admin permission and is
audited). For anyone else the widget says it is for admins and builds no controls. A
change is applied when its checkbox is clicked; a refused change is put back and the
reason shown.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..access import Permission
from ._common import ErrorLine, has_permission, html_table, site_banner

__all__ = ["Admin"]

_AUDIT_COLUMNS = ("at", "user", "action", "node", "outcome")


class Admin(widgets.VBox):
    """The admin dashboard as one widget: ``Admin(wb)``."""

    def __init__(self, wb: Any, *, audit_rows: int = 50) -> None:
        super().__init__()
        self.add_class("aw-admin")
        self.wb = wb
        self.audit_rows = audit_rows
        self.error = ErrorLine()
        if not has_permission(wb, "admin"):
            self.children: tuple[widgets.Widget, ...] = (
                widgets.HTML("<h3>Administration</h3><p class='aw-not-admin'>"
                             "This page is for admins.</p>"),
            )  # fmt: skip
            return
        self.admin = wb.access.admin
        self.group = widgets.Combobox(description="Group", placeholder="existing or new name",
                                      ensure_option=False)  # fmt: skip
        self.group.add_class("aw-group")
        self.open_button = widgets.Button(description="Show", icon="users")
        self.open_button.add_class("aw-open-group")
        self.permissions = {
            p.value: self._checkbox(p.value, f"aw-perm-{p.value}") for p in Permission
        }
        self.node_roles: dict[tuple[str, str], widgets.Checkbox] = {}
        self.node_grid = widgets.VBox()
        self.node_grid.add_class("aw-node-access")
        self.members = widgets.Text(description="Members", placeholder="user1, user2",
                                    layout={"width": "36em"})  # fmt: skip
        self.members.add_class("aw-members")
        self.save_members = widgets.Button(description="Save members")
        self.save_members.add_class("aw-save-members")
        self.announcement = widgets.Text(description="Announcement", layout={"width": "36em"})
        self.maintenance = widgets.Checkbox(description="Maintenance mode", indent=False)
        self.save_site = widgets.Button(description="Save site status")
        self.save_site.add_class("aw-save-site")
        self.audit = widgets.HTML()
        self.audit.add_class("aw-audit")
        self._loading = False

        self.open_button.on_click(lambda _b: self.show_group())
        self.save_members.on_click(lambda _b: self._apply(self._set_members))
        self.save_site.on_click(lambda _b: self._apply(self._set_site))
        self.children = (
            widgets.HTML("<h3>Administration</h3>"),
            site_banner(wb),
            self.error,
            widgets.HBox([self.group, self.open_button]),
            widgets.HTML("<b>Permissions</b>"),
            widgets.GridBox(
                list(self.permissions.values()), layout={"grid_template_columns": "repeat(4, 16em)"}
            ),
            widgets.HTML("<b>Nodes</b> (source / destination)"),
            self.node_grid,
            widgets.HBox([self.members, self.save_members]),
            widgets.HTML("<b>Site</b>"),
            widgets.HBox([self.announcement, self.maintenance, self.save_site]),
            widgets.HTML(f"<b>Audit log</b> (last {audit_rows})"),
            self.audit,
        )
        self.refresh()

    def _checkbox(self, label: str, css: str) -> widgets.Checkbox:
        box = widgets.Checkbox(description=label, indent=False, disabled=True)
        box.add_class(css)
        box.observe(self._toggled, names="value")
        return box

    # -- reading ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read groups, site status and the audit log again."""
        try:
            self.group.options = tuple(g.name for g in self.admin.groups())
            status = self.wb.access.site_status()
            self.announcement.value = status.announcement or ""
            self.maintenance.value = bool(status.maintenance)
            events = self.admin.audit_events(limit=self.audit_rows)
            rows = [
                {"at": e.at.strftime("%Y-%m-%d %H:%M:%S"), "user": e.user, "action": e.action,
                 "node": e.node or "", "outcome": str(e.outcome)}
                for e in reversed(events)
            ]  # fmt: skip
            self.audit.value = html_table(rows, _AUDIT_COLUMNS, css="aw-audit-list")
        except Exception as exc:
            self.error.show(exc)

    def show_group(self) -> None:
        """Show the chosen group's permissions, node access and members."""
        name = self.group.value.strip()
        if not name:
            self.error.show("type or choose a group name")
            return
        known = {g.name: g for g in self.admin.groups()}
        info = known.get(name)
        self._loading = True
        try:
            for value, box in self.permissions.items():
                box.value = info is not None and value in info.permissions
                box.disabled = False
            nodes = [spec.name for spec in self.wb.node_specs()]
            lines, self.node_roles = [], {}
            for node in nodes:
                roles = {r.value for r in (info.nodes.get(node, ()) if info else ())}
                pair = []
                for role in ("source", "destination"):
                    box = self._checkbox(role, f"aw-node-{node}-{role}")
                    box.value, box.disabled = role in roles, False
                    self.node_roles[(node, role)] = box
                    pair.append(box)
                label = widgets.HTML(html.escape(node), layout={"width": "12em"})
                lines.append(widgets.HBox([label, *pair]))
            self.node_grid.children = tuple(lines)
            self.members.value = ", ".join(info.users) if info else ""
        finally:
            self._loading = False
        self.error.note(f"group {name}" + ("" if info else " (new: created on the first change)"))

    # -- changing -----------------------------------------------------------------------
    def _toggled(self, change: dict[str, Any]) -> None:
        if self._loading:
            return
        box, on = change["owner"], bool(change["new"])
        group = self.group.value.strip()
        permission = next((p for p, b in self.permissions.items() if b is box), None)
        if permission is not None:
            act = self.admin.add_permission if on else self.admin.remove_permission
            ok = self._apply(lambda: act(group, permission))
        else:
            node, role = next(k for k, b in self.node_roles.items() if b is box)
            if on:
                ok = self._apply(lambda: self.admin.grant(group, node, **{role: True}))
            else:
                ok = self._apply(lambda: self.admin.revoke(group, node, role))
        if not ok:  # put the box back as it was
            self._loading = True
            box.value = not on
            self._loading = False

    def _set_members(self) -> None:
        users = [u.strip() for u in self.members.value.split(",") if u.strip()]
        self.admin.set_members(self.group.value.strip(), users)

    def _set_site(self) -> None:
        self.admin.set_maintenance(self.maintenance.value, message=self.announcement.value)

    def _apply(self, change: Callable[[], Any]) -> bool:
        self.error.clear()
        try:
            change()
        except Exception as exc:
            self.error.show(exc)
            return False
        self.refresh()
        self.error.note("saved")
        return True
