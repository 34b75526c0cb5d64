"""Every public entry point of the facade checks access before it acts.

The table below must name every public method of :class:`Workbench`: a method added
without an entry fails :func:`test_table_covers_every_public_method`, so nobody can add an
unchecked entry point by accident. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adit_workbench.access import Access
from adit_workbench.config import Settings
from adit_workbench.errors import NodeAccessDenied, PermissionDenied
from adit_workbench.store import Database
from adit_workbench.workbench import Workbench

from .conftest import HubUser


@dataclass(frozen=True)
class Call:
    """How to call a method, and what a user without rights must get."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: "admin" (PermissionDenied for admin), "node" (NodeAccessDenied), "open", or the
    #: name of another permission the call must be refused for.
    check: str = "admin"


ENTRY_POINTS: dict[str, Call] = {
    "node_specs": Call(check="open"),  # filtered to the user's nodes, tested below
    "node_spec": Call(("ARCHIVE",), check="node"),
    "node": Call(("ARCHIVE",), check="node"),
    "upload": Call(("/tmp",), {"destination": "RESEARCH"}, "upload"),
    "echo": Call(("ARCHIVE",), check="node"),
    "add_server": Call(("NEW",), {"ae_title": "NEW", "host": "127.0.0.1", "port": 104}),
    "add_folder": Call(("NEWDIR", "/tmp/newdir")),
    "remove_node": Call(("PACS",)),
    "probe": Call(("PACS",)),
    "start_sandbox": Call(),
    "stop_sandbox": Call(),
    "sandbox_status": Call(check="open"),  # state of this machine's sandbox process only
    "close": Call(check="open"),  # releases this object's own connections
    # bob is a PACS source, so he may hold the key; users with no source role are refused
    # (tests/dicom/test_images.py).
    "pseudonymizer": Call(check="open"),
    # Job kinds: bob lacks the app permission (checked before any input is read).
    "transfer": Call(("1.2.3",), {"to": "RESEARCH", "source": "PACS"}, "selective_transfer"),
    "batch_query": Call(("q.csv",), {"source": "PACS"}, "batch_query"),
    "batch_transfer": Call(("t.csv",), {"source": "PACS", "to": "RESEARCH"}, "batch_transfer"),
    "mass_transfer": Call(
        (),
        {
            "source": "PACS",
            "to": "RESEARCH",
            "start": "2020-01-01",
            "end": "2020-01-02",
            "filters": [{"modality": "CT"}],
        },
        "mass_transfer",
    ),
}


def _public_methods() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(Workbench)
        if not name.startswith("_") and callable(member)
    }


def test_table_covers_every_public_method() -> None:
    assert _public_methods() == set(ENTRY_POINTS), "add the new method to ENTRY_POINTS"


@pytest.fixture
def bob_wb(settings: Settings, database: Database, admin: Access, hub_user: HubUser) -> Workbench:
    """A workbench for bob, who may use PACS as a source and nothing else."""
    admin.admin.grant("students", "PACS", source=True)
    return Workbench(settings, database, hub_user("bob", "students"))


@pytest.mark.parametrize("method", sorted(n for n, c in ENTRY_POINTS.items() if c.check != "open"))
def test_each_entry_point_refuses_and_audits(
    method: str, bob_wb: Workbench, admin: Access, database: Database
) -> None:
    call = ENTRY_POINTS[method]
    before = {s.name for s in Workbench(bob_wb.settings, database, admin).node_specs()}
    expected = NodeAccessDenied if call.check == "node" else PermissionDenied
    with pytest.raises(expected) as caught:
        getattr(bob_wb, method)(*call.args, **call.kwargs)
    if call.check not in ("admin", "node"):
        assert caught.value.permission == call.check
    elif call.check == "admin":
        assert caught.value.permission == "admin"
    else:
        assert "ARCHIVE" in str(caught.value)
    denied = [e for e in admin.admin.audit_events(user="bob") if e.outcome == "denied"]
    assert len(denied) == 1
    after = {s.name for s in Workbench(bob_wb.settings, database, admin).node_specs()}
    assert after == before  # nothing was changed by the refused call


def test_node_specs_shows_only_the_users_nodes(bob_wb: Workbench, admin: Access) -> None:
    assert [s.name for s in bob_wb.node_specs()] == ["PACS"]
    admin_wb = Workbench(bob_wb.settings, bob_wb.database, admin)
    assert [s.name for s in admin_wb.node_specs()] == ["ARCHIVE", "PACS", "RESEARCH"]


def test_allowed_calls_pass_and_are_audited(
    bob_wb: Workbench, admin: Access, tmp_path: Path
) -> None:
    assert bob_wb.node_spec("PACS").name == "PACS"
    admin_wb = Workbench(bob_wb.settings, bob_wb.database, admin)
    admin_wb.add_folder("DROP", tmp_path)
    admin_wb.echo("DROP")
    admin_wb.remove_node("DROP")
    rows = [(e.action, e.node, e.outcome) for e in admin.admin.audit_events(user="boss")]
    assert ("node.add", "DROP", "ok") in rows
    assert ("node.echo", "DROP", "ok") in rows
    assert ("node.remove", "DROP", "ok") in rows


def test_failed_operation_is_audited_as_failed(admin: Access, bob_wb: Workbench) -> None:
    admin_wb = Workbench(bob_wb.settings, bob_wb.database, admin)
    with pytest.raises(Exception):  # noqa: B017 - the node's own error type is not the point
        admin_wb.echo("PACS")  # nothing listens on its port
    [row] = admin.admin.audit_events(action="node.echo")
    assert row.outcome == "failed" and row.details["error"]


def test_workbench_without_access_resolves_the_caller(
    settings: Settings, database: Database
) -> None:
    """No unchecked construction: the OS user signs in on SQLite (admin of an embedded
    database) and is refused on a shared PostgreSQL database."""
    if not database.is_sqlite:
        with pytest.raises(PermissionDenied, match="go through the workbench service"):
            Workbench(settings, database)
        return
    wb = Workbench(settings, database)
    assert wb.user and wb.access.is_admin


def test_connect_outside_a_hub_is_the_local_admin_of_the_embedded_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    from adit_workbench.workbench import connect

    for var in ("JUPYTERHUB_USER", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL"):
        monkeypatch.delenv(var, raising=False)
    wb = connect(settings)
    try:
        profile = wb.access.profile()
        assert profile.name == getpass.getuser() == wb.user
        assert profile.is_admin and profile.groups == ("admins",)
    finally:
        wb.database.dispose()
