"""``adit-workbench access | users | tokens | audit`` on SQLite and PostgreSQL.

The CLI's user is the OS user on SQLite. On PostgreSQL (shared) the OS user is refused
and the CLI signs in as the operator (``ADIT_WB_OPERATOR``, here the OS user's name, as on
the service's own account). The first of them is bootstrapped as admin; with another admin
already present it is an ordinary user.
"""

from __future__ import annotations

import csv
import getpass
from collections.abc import Iterator
from pathlib import Path

import pytest
from click import Group

from adit_workbench.access import Access, Identity, IdentitySource, authenticate_token, sign_in
from adit_workbench.cli import _common, app, main
from adit_workbench.config import get_settings
from adit_workbench.store import Database

ME = getpass.getuser()


@pytest.fixture
def cli(database: Database, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The CLI pointed at this test's database (a shared one, not embedded)."""
    monkeypatch.setenv("ADIT_WB_DATABASE_URL", database.engine.url.render_as_string(False))
    if not database.is_sqlite:
        monkeypatch.setenv("ADIT_WB_OPERATOR", ME)
    get_settings.cache_clear()
    _common.reset()
    yield database
    _common.reset()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    _common.reset()  # each invocation is a process of its own in real life
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_admin_grants_and_shows(cli: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "access", "grant", "radiology", "PACS", "--source")[0] == 0
    code, out, _ = run(capsys, "access", "grant", "radiology", "RESEARCH")
    assert code == 0 and "RESEARCH as source+destination" in out
    assert run(capsys, "access", "perm", "add", "radiology", "batch_query")[0] == 0
    assert run(capsys, "access", "perm", "add", "radiology", "explorer")[0] == 0
    assert run(capsys, "access", "perm", "remove", "radiology", "explorer")[0] == 0
    code, out, _ = run(capsys, "access", "show", "radiology")
    assert code == 0
    assert "permissions: batch_query" in out
    assert "PACS (source)" in out and "RESEARCH (source+destination)" in out
    assert run(capsys, "access", "revoke", "radiology", "PACS")[0] == 0
    code, out, _ = run(capsys, "access", "show")
    assert "admins" in out and "PACS (source)" not in out
    code, out, _ = run(capsys, "users", "list")
    assert code == 0 and ME in out and "admins" in out


def test_bad_input_exits_2(cli: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "access", "perm", "add", "g", "fly")[0] == 2
    code, _, err = run(capsys, "access", "grant", "g", "NOPE")
    assert code == 2 and "NOPE" in err
    assert run(capsys, "tokens", "create", "--expires", "365")[0] == 2


def test_tokens_round_trip(cli: Database, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "tokens", "create", "--expires", "7", "--description", "ci")
    assert code == 0 and "not shown again" in err
    token = out.strip()
    assert authenticate_token(cli, token).name == ME
    code, out, _ = run(capsys, "tokens", "list")
    assert code == 0 and "ci" in out and "active" in out and token not in out
    assert run(capsys, "tokens", "revoke", "1")[0] == 0
    assert "revoked" in run(capsys, "tokens", "list")[1]
    assert run(capsys, "tokens", "create", "--expires", "never")[0] == 0  # admin holds it all


def test_maintenance_and_audit_export(
    cli: Database, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "access", "maintenance", "on", "--message", "upgrade at 6")
    assert code == 0 and "maintenance on: upgrade at 6" in out
    assert "maintenance: ON" in run(capsys, "access", "show")[1]
    assert run(capsys, "access", "maintenance", "off")[0] == 0
    target = tmp_path / "audit.csv"
    code, out, _ = run(capsys, "audit", "export", str(target))
    assert code == 0
    actions = [row["action"] for row in csv.DictReader(target.open())]
    assert actions.count("site.maintenance") == 2
    assert run(capsys, "audit", "export", str(target), "--since", "2999-01-01")[1].startswith("0 ")


@pytest.fixture
def not_admin(cli: Database) -> Access:
    """Someone else is admin already, so the CLI's user is an ordinary user."""
    return sign_in(cli, Identity("boss", IdentitySource.SERVICE), embedded=False)


ADMIN_COMMANDS = [
    ("access", "grant", "g", "PACS"),
    ("access", "revoke", "g", "PACS"),
    ("access", "perm", "add", "g", "explorer"),
    ("access", "perm", "remove", "g", "explorer"),
    ("access", "show"),
    ("access", "show", "g"),
    ("access", "maintenance", "on"),
    ("users", "list"),
    ("audit", "export", "/tmp/never-written.csv"),
    ("tokens", "list", "--all"),
]


def _leaf_commands(group: Group, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():
        if isinstance(command, Group):
            found |= _leaf_commands(command, (*prefix, name))
        else:
            found.add((*prefix, name))
    return found


def test_every_access_command_is_in_the_matrix() -> None:
    ours = {c for c in _leaf_commands(app) if c[0] in ("access", "users", "tokens", "audit")}
    covered = {c[: 3 if c[1] == "perm" else 2] for c in ADMIN_COMMANDS}
    covered |= {("tokens", "create"), ("tokens", "list"), ("tokens", "revoke")}
    assert ours == covered


@pytest.mark.parametrize("args", ADMIN_COMMANDS, ids=" ".join)
def test_ordinary_user_is_refused(
    args: tuple[str, ...], not_admin: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 1 and "lacks the permission 'admin'" in err
    denied = [e for e in not_admin.admin.audit_events(user=ME) if e.outcome == "denied"]
    assert len(denied) == 1
    assert not Path("/tmp/never-written.csv").exists()


def test_ordinary_user_tokens_need_rest_api(
    not_admin: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "tokens", "create")
    assert code == 1 and "rest_api" in err
    assert run(capsys, "tokens", "list")[0] == 0
    assert run(capsys, "tokens", "revoke", "1")[0] == 2  # not theirs / not there
    not_admin.admin.add_permission("api", "rest_api")
    not_admin.admin.set_members("api", [ME])
    assert run(capsys, "tokens", "create")[0] == 0


ON_POSTGRES = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@ON_POSTGRES
def test_os_user_on_a_shared_database_is_refused(
    cli: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``USER=root adit-workbench access perm add …``: $USER is a claim, not an identity."""
    monkeypatch.delenv("ADIT_WB_OPERATOR")
    get_settings.cache_clear()
    for var in ("LOGNAME", "LNAME", "USERNAME", "JUPYTERHUB_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USER", "root")
    with cli.engine.connect() as conn:
        before = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM audit_event ORDER BY id")]
    code, out, err = run(capsys, "access", "perm", "add", "g", "admin")
    assert code == 1 and out == ""
    assert "'root' is not an identity on a shared database" in err
    assert "ADIT_WB_SERVICE_URL" in err and "ADIT_WB_API_TOKEN" in err
    with cli.engine.connect() as conn:
        users = conn.exec_driver_sql("SELECT count(*) FROM app_user").scalar()
        groups = conn.exec_driver_sql("SELECT count(*) FROM app_group").scalar()
        after = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM audit_event ORDER BY id")]
    assert (users, groups) == (0, 0) and after == before
