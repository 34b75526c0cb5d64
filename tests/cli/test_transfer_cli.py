"""``adit-workbench transfer`` is a selective-transfer job: the same checks, job row, audit,
project key and profile as every other entry point (SQLite and PostgreSQL, sandbox PACS).

The CLI signs in as the operator (``ADIT_WB_OPERATOR``), the way it runs on the service's
own account; what that identity may do comes from the database like for anyone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adit_workbench.access import Access, Identity, IdentitySource, Permission, sign_in
from adit_workbench.cli import _common, main
from adit_workbench.config import get_settings
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.query import find_studies
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.jobs import Job

USER = "carol"


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPacs]:
    with SandboxPacs(tmp_path_factory.mktemp("cli-sandbox"), ae_title="SANDBOX") as server:
        server.seed(2, seed=3)
        yield server


@pytest.fixture
def database(
    database_url: str,
    data_dir: Path,
    pacs: SandboxPacs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Database]:
    """A shared database with SANDBOX and OUT; the CLI acts as USER (no rights yet)."""
    (tmp_path / "out").mkdir()
    db = Database(database_url)
    db.upgrade()
    caps = Capabilities(study_root_find=True, patient_root_find=True, study_root_get=True)
    with db.session() as session:
        node_store.add_server(
            session, ServerSpec("SANDBOX", "SANDBOX", "127.0.0.1", pacs.port, capabilities=caps)
        )
        node_store.add_folder(session, FolderSpec("OUT", tmp_path / "out"))
    monkeypatch.setenv("ADIT_WB_DATABASE_URL", database_url)
    monkeypatch.setenv("ADIT_WB_OPERATOR", USER)
    get_settings.cache_clear()
    _common.reset()
    yield db
    _common.reset()
    db.dispose()


@pytest.fixture
def admin(database: Database) -> Access:
    boss = sign_in(database, Identity("boss", IdentitySource.SERVICE), embedded=False)
    sign_in(database, Identity(USER, IdentitySource.SERVICE), embedded=False)
    boss.admin.set_members("team", [USER])
    boss.admin.grant("team", "SANDBOX", source=True)
    boss.admin.grant("team", "OUT", destination=True)
    return boss


def _study(database: Database) -> tuple[str, str]:
    with database.session() as session:
        spec = node_store.get_node(session, "SANDBOX")
    node = open_node(spec, get_settings())
    try:
        first = next(iter(find_studies(node)))
    finally:
        node.close()
    return first.patient_id, first.study_uid


def _files(root: Path) -> dict[Path, bytes]:
    """Delivered files by their path below ``root``, a job folder (their names differ)."""
    found = {}
    for path in root.rglob("*.dcm"):
        relative = path.relative_to(root)
        if not any(part.startswith(".") for part in relative.parts):
            found[relative] = path.read_bytes()
    return found


def test_an_explorer_only_user_is_refused(
    admin: Access, database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.admin.add_permission("team", Permission.EXPLORER)
    _, study_uid = _study(database)
    code = main(["transfer", "--from", "SANDBOX", "--to", "OUT", "--study", study_uid])
    _, err = capsys.readouterr()
    assert code == 1 and f"user {USER!r} lacks the permission 'selective_transfer'" in err
    assert not list((tmp_path / "out").rglob("*.dcm"))
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    denied = [e for e in admin.admin.audit_events(user=USER) if e.outcome == "denied"]
    assert [e.action for e in denied] == ["job.create.selective_transfer"]
    # Unpseudonymized is a permission of its own, even with the transfer permission.
    admin.admin.add_permission("team", Permission.SELECTIVE_TRANSFER)
    args = ["transfer", "--from", "SANDBOX", "--to", "OUT", "--study", study_uid]
    assert main([*args, "--no-pseudonymize"]) == 1
    assert "transfer_unpseudonymized" in capsys.readouterr().err
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_cli_and_batch_job_give_byte_identical_files(
    admin: Access, database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.admin.add_permission("team", Permission.SELECTIVE_TRANSFER)
    admin.admin.add_permission("team", Permission.BATCH_TRANSFER)
    patient_id, study_uid = _study(database)
    out = tmp_path / "out"
    code = main(["transfer", "--from", "SANDBOX", "--to", "OUT", "--study", study_uid,
                 "--pseudonym", "SUBJ-7", "--trial-id", "T7", "--folder-name", "cli"])  # fmt: skip
    cli_out, err = capsys.readouterr()
    assert code == 0, err
    batch = tmp_path / "batch.csv"
    batch.write_text(f"PatientID,StudyInstanceUID,Pseudonym\n{patient_id},{study_uid},SUBJ-7\n")
    # Into another folder node: in OUT the batch job would find the CLI's copy of the
    # same study and pseudonym and deliver nothing (idempotence across jobs).
    second = tmp_path / "second"
    second.mkdir()
    with database.session() as session:
        node_store.add_folder(session, FolderSpec("SECOND", second))
    admin.admin.grant("team", "SECOND", destination=True)
    code = main(["batch-transfer", str(batch), "--from", "SANDBOX", "--to", "SECOND",
                 "--trial-id", "T7", "--wait"])  # fmt: skip
    batch_out, err = capsys.readouterr()
    assert code == 0, err
    by_cli = _files(out / "cli")
    [batch_folder] = [p for p in second.iterdir() if p.name.startswith("adit_batch_transfer_")]
    by_batch = _files(batch_folder)
    assert by_cli and by_cli.keys() == by_batch.keys()
    assert all(by_cli[k] == by_batch[k] for k in by_cli), "the same study differs by entry point"
    assert all(p.parts[0] == "SUBJ-7" for p in by_cli)
    # Both are jobs of USER, both audited.
    with database.session() as session:
        jobs = session.execute(select(Job.id, Job.kind, Job.owner).order_by(Job.id)).all()
    assert [(k, o) for _, k, o in jobs] == [
        ("selective_transfer", USER),
        ("batch_transfer", USER),
    ]
    assert [int(cli_out.split()[0]), int(batch_out.split()[0])] == [j for j, _, _ in jobs]
    created = [e.action for e in admin.admin.audit_events(user=USER) if e.outcome == "ok"]
    assert "job.create.selective_transfer" in created and "job.create.batch_transfer" in created


def test_jobs_leak_scan_fetches_the_originals_again(
    admin: Access, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    admin.admin.add_permission("team", Permission.SELECTIVE_TRANSFER)
    admin.admin.add_permission("team", Permission.TRANSFER_UNPSEUDONYMIZED)
    _, study_uid = _study(database)
    for extra in (["--pseudonym", "SUBJ-1"], ["--no-pseudonymize"]):
        code = main(["transfer", "--from", "SANDBOX", "--to", "OUT", "--study", study_uid, *extra])
        assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["jobs", "leak-scan", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() and not err
    assert main(["jobs", "leak-scan", "2"]) == 2  # the originals: nothing to scan, refused
    assert "unpseudonymized" in capsys.readouterr().err
