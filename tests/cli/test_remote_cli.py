"""The command line as a client of the workbench service (issue 12): with
``ADIT_WB_SERVICE_URL`` and a token, user commands go to the real service, which checks
the caller's permissions; commands that need the database stop with one line.

The CLI runs as its own process with a clean environment and a data dir of its own, as
in a hub terminal: it can reach nothing but the service, and the test shows it wrote
nothing of its own (no database, no secret). The service and its users are the
fixtures of ``tests/web/conftest.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from adit_workbench.cli import main
from adit_workbench.config import Settings, get_settings
from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.access import AuditEvent, Group
from adit_workbench.store.jobs import Job
from adit_workbench.workbench import Workbench
from tests.web import conftest as web
from tests.web.conftest import People, Running

# The service's fixtures, reused (not copied): the real service over a seeded sandbox PACS.
pacs = web.pacs
service_settings = web.service_settings
database = web.database
service = web.service
people = web.people

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Result:
    code: int
    out: str
    err: str


def _cli(home: Path, *args: str, url: str | None, token: str | None, **env: str) -> Result:
    """``adit-workbench ARGS`` in a fresh process that knows only the service."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ADIT_WB_", "JUPYTERHUB_", "PYTHONPATH"))
    }
    clean.update(ADIT_WB_DATA_DIR=str(home), PYTHONPATH=str(ROOT), **env)
    if url is not None:
        clean["ADIT_WB_SERVICE_URL"] = url
    if token is not None:
        clean["ADIT_WB_API_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "-m", "adit_workbench", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=home.parent,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


def _contents(root: Path) -> list[str]:
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*.dcm")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _folder(database: Database, people: People, user: str, name: str, path: Path) -> None:
    path.mkdir()
    with database.session() as session:
        node_store.add_folder(session, FolderSpec(name, path))
    group = people.access[user].profile().groups[0]
    people.admin.admin.grant(group, name, destination=True)


def test_query_and_transfer_go_through_the_service(
    service_settings: Settings,
    database: Database,
    service: Running,
    people: People,
    tmp_path: Path,
) -> None:
    home = tmp_path / "cli-home"
    token = people.token("alice")
    _folder(database, people, "alice", "OUT_API", tmp_path / "api")
    _folder(database, people, "alice", "OUT_CLI", tmp_path / "cli")

    nodes = _cli(home, "nodes", "list", url=service.url, token=token)
    assert nodes.code == 0, nodes.err
    names = {line.split()[0] for line in nodes.out.splitlines()[1:]}
    assert names == {"SANDBOX", "OUT", "OUT_API", "OUT_CLI"}  # not OTHER: no access
    shown = _cli(home, "nodes", "show", "OTHER", url=service.url, token=token)
    assert shown.code == 1 and "OTHER" in _one_line(shown)

    local = Workbench(service_settings, database, people.access["alice"])
    try:
        expected = local.node("SANDBOX").find_studies(patient_id="SYN*", limit=50)
        api_job = local.transfer([expected[0]], to="OUT_API", pseudonym="SUBJ-9",
                                 trial_protocol_id="T9").wait(300, progress=False)  # fmt: skip
    finally:
        local.close()

    query = _cli(home, "query", "SANDBOX", "--patient-id", "SYN*", "--limit", "50",
                 "--format", "json", url=service.url, token=token)  # fmt: skip
    assert query.code == 0, query.err
    rows = json.loads(query.out)
    assert rows == json.loads(expected.df.to_json(orient="records", date_format="iso"))
    assert len(rows) == len(expected) > 1

    study = expected[0].study_uid
    transfer = _cli(home, "transfer", "--from", "SANDBOX", "--to", "OUT_CLI", "--study", study,
                    "--pseudonym", "SUBJ-9", "--trial-id", "T9",
                    url=service.url, token=token)  # fmt: skip
    assert transfer.code == 0, transfer.err
    job_id = int(transfer.out.split()[0])
    assert _contents(tmp_path / "cli") == _contents(tmp_path / "api") != []
    with database.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.owner, job.kind, job.status) == ("alice", "selective_transfer", "SUCCESS")
        assert job.id != api_job.id

    listed = _cli(home, "jobs", "list", url=service.url, token=token)
    assert listed.code == 0, listed.err
    assert str(job_id) in listed.out.split()
    show = _cli(home, "jobs", "show", str(job_id), url=service.url, token=token)
    assert show.code == 0, show.err
    assert "owner: alice" in show.out and "SUCCESS" in show.out
    tokens = _cli(home, "tokens", "list", url=service.url, token=token)
    assert tokens.code == 0 and token[:8] in tokens.out, tokens.err

    # The client held nothing: no database and no secret of its own.
    assert not home.exists() or not any(home.rglob("*"))


def test_a_user_without_the_permission_is_refused_by_the_service(
    database: Database, service: Running, people: People, tmp_path: Path
) -> None:
    home = tmp_path / "cli-home"
    with Workbench(service.settings, database, people.access["nina"]) as local:
        [study] = local.node("SANDBOX").find_studies(limit=1)
    transfer = _cli(home, "transfer", "--from", "SANDBOX", "--to", "OUT", "--study",
                    study.study_uid, url=service.url, token=people.token("nina"))  # fmt: skip
    assert transfer.code == 1
    line = _one_line(transfer)
    assert "permission" in line and "selective_transfer" in line
    assert transfer.out == ""
    out = Path(node_store_path(database, "OUT"))
    assert not any(out.rglob("*.dcm"))
    with database.session() as session:
        assert session.scalars(select(Job).where(Job.owner == "nina")).all() == []
        # The service decided, and recorded it: the CLI has no database to check against.
        denied = session.scalars(
            select(AuditEvent).where(AuditEvent.user_name == "nina", AuditEvent.outcome == "denied")
        ).all()
    assert denied


def node_store_path(database: Database, name: str) -> str:
    with database.session() as session:
        spec = node_store.get_node(session, name)
    assert isinstance(spec, FolderSpec)
    return str(spec.path)


def test_admin_commands_are_the_service_s_to_refuse(
    database: Database, service: Running, people: People, tmp_path: Path
) -> None:
    home = tmp_path / "cli-home"
    group = people.access["alice"].profile().groups[0]

    def permissions() -> list[str]:
        with database.session() as session:
            row = session.scalars(select(Group).where(Group.name == group)).one()
            return sorted(p.permission for p in row.permissions)

    before = permissions()
    as_root = _cli(home, "access", "perm", "add", group, "admin",
                   url=service.url, token=people.token("alice"), USER="root")  # fmt: skip
    assert as_root.code == 1
    assert "admin" in _one_line(as_root)
    no_token = _cli(home, "access", "perm", "add", group, "admin",
                    url=service.url, token=None, USER="root")  # fmt: skip
    assert no_token.code == 2
    assert "ADIT_WB_API_TOKEN" in _one_line(no_token)
    assert permissions() == before

    # An admin's token does it, through the same route.
    boss = _cli(home, "access", "perm", "add", group, "staff",
                url=service.url, token=people.token("boss"))  # fmt: skip
    assert boss.code == 0, boss.err
    assert "staff" in permissions()
    assert not home.exists() or not any(home.rglob("*"))


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["db", "current"],
        ["db", "grant-service-role", "wb_service"],
        ["serve"],
        ["worker", "--burst"],
        ["worker", "status"],
        ["sandbox", "start"],
        ["sandbox", "status"],
        ["hub", "start"],
        ["hub", "status"],
        ["pseudonymize", "in", "out"],
    ],
    ids=" ".join,
)
def test_service_host_commands_stop_with_one_line(
    command: list[str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process (cheap): nothing but the service's address is configured, and no
    service needs to run, as the command stops before it would reach anything."""
    home = tmp_path / "cli-home"
    (tmp_path / "in").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ADIT_WB_", "JUPYTERHUB_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ADIT_WB_DATA_DIR", str(home))
    monkeypatch.setenv("ADIT_WB_SERVICE_URL", "http://127.0.0.1:9/")
    get_settings.cache_clear()
    try:
        code = main(command)
    finally:
        get_settings.cache_clear()
    result = Result(code, *capsys.readouterr())
    assert result.code == 2, result.err
    line = _one_line(result)
    assert "workbench service" in line
    assert not home.exists()
