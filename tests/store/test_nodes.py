"""Node repository: round trips, one name space for servers and folders, input errors."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adit_workbench.config import get_settings
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.errors import InputError, NotFound
from adit_workbench.store import Database, nodes
from adit_workbench.store.models import DicomServer, Node
from adit_workbench.store.sealed import is_sealed


@pytest.fixture(autouse=True)
def _own_secret(data_dir: Path) -> None:
    """Credentials are sealed under the master secret: each test has its own."""


SECRET = "Bearer very-secret-token-4711"


def full_server(name: str = "PACS") -> ServerSpec:
    """A server with every field set to a non-default value."""
    return ServerSpec(
        name=name,
        ae_title="ORTHANC_1",
        host="pacs.example.org",
        port=11112,
        capabilities=Capabilities(
            echo=False,
            patient_root_find=True,
            study_root_find=False,
            patient_root_get=True,
            study_root_get=True,
            patient_root_move=True,
            study_root_move=True,
            store=True,
            qido=True,
            wado=True,
            stow=True,
            probed_at=datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC),
            details={"echo": "status 0xC000", "qido": "ok"},
        ),
        dicomweb_root_url="https://pacs.example.org/dicom-web",
        dicomweb_qido_prefix="qido",
        dicomweb_wado_prefix="wado",
        dicomweb_stow_prefix="stow",
        dicomweb_authorization=SECRET,
        max_search_results=250,
        max_associations=7,
    )


def full_folder(name: str = "RESEARCH") -> FolderSpec:
    return FolderSpec(name=name, path=Path("/data/research"), quota_gb=12.5, warn_size_gb=10.0)


def test_server_round_trips_every_field(database: Database) -> None:
    spec = full_server()
    with database.session() as session:
        nodes.add_server(session, spec)
    with database.session() as session:
        got = nodes.get_node(session, "PACS")
    assert got == spec
    assert isinstance(got, ServerSpec)
    assert got.dicomweb_authorization == SECRET
    assert got.capabilities.details == spec.capabilities.details  # compare=False field
    assert got.capabilities.probed_at is not None
    assert got.capabilities.probed_at.tzinfo is not None


def test_server_defaults_round_trip(database: Database) -> None:
    spec = ServerSpec(name="MIN", ae_title="MIN", host="127.0.0.1", port=104)
    with database.session() as session:
        nodes.add_server(session, spec)
        assert nodes.get_node(session, "MIN") == spec


def test_folder_round_trips_every_field(database: Database) -> None:
    with database.session() as session:
        nodes.add_folder(session, full_folder())
        nodes.add_folder(session, FolderSpec(name="BARE", path=Path("/tmp/bare")))
    with database.session() as session:
        assert nodes.get_node(session, "RESEARCH") == full_folder()
        assert nodes.get_node(session, "BARE") == FolderSpec(name="BARE", path=Path("/tmp/bare"))


def test_list_nodes_sorted_by_name_across_kinds(database: Database) -> None:
    with database.session() as session:
        nodes.add_server(session, full_server("zeta"))
        nodes.add_folder(session, full_folder("Alpha"))
        nodes.add_server(session, full_server("beta"))
    with database.session() as session:
        listed = nodes.list_nodes(session)
    assert [spec.name for spec in listed] == ["Alpha", "beta", "zeta"]
    assert [type(spec) for spec in listed] == [FolderSpec, ServerSpec, ServerSpec]


def test_remove_node_removes_child_row(database: Database) -> None:
    with database.session() as session:
        nodes.add_server(session, full_server())
        nodes.add_folder(session, full_folder())
    with database.session() as session:
        nodes.remove_node(session, "PACS")
    with database.session() as session:
        assert [spec.name for spec in nodes.list_nodes(session)] == ["RESEARCH"]
        assert session.scalar(select(func.count()).select_from(DicomServer)) == 0
        with pytest.raises(NotFound, match="PACS"):
            nodes.remove_node(session, "PACS")


def test_get_missing_node_names_it(database: Database) -> None:
    with pytest.raises(NotFound, match="'NOPE'"), database.session() as session:
        nodes.get_node(session, "NOPE")


@pytest.mark.parametrize(
    ("first", "second"),
    [("server", "folder"), ("folder", "server"), ("server", "server"), ("folder", "folder")],
)
def test_names_are_unique_across_kinds(database: Database, first: str, second: str) -> None:
    add = {
        "server": lambda s: nodes.add_server(s, full_server("SAME")),
        "folder": lambda s: nodes.add_folder(s, full_folder("SAME")),
    }
    with database.session() as session:
        add[first](session)
    with pytest.raises(InputError, match="'SAME' already exists"), database.session() as s:
        add[second](s)
    with database.session() as session:
        assert len(nodes.list_nodes(session)) == 1


def test_database_enforces_unique_names(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when another writer slips past the repository's check, the database refuses."""
    with database.session() as session:
        nodes.add_folder(session, full_folder("SAME"))
    monkeypatch.setattr(nodes, "_existing_kind", lambda session, name: None)
    with database.session() as session:
        with pytest.raises(InputError, match="'SAME' already exists"):
            nodes.add_server(session, full_server("SAME"))
        # the savepoint kept the session usable
        nodes.add_server(session, full_server("OTHER"))
    with database.session() as session:
        assert [spec.name for spec in nodes.list_nodes(session)] == ["OTHER", "SAME"]


def test_save_capabilities(database: Database) -> None:
    with database.session() as session:
        nodes.add_server(session, ServerSpec(name="PACS", ae_title="PACS", host="h", port=104))
        nodes.add_folder(session, full_folder())
        before = session.scalars(select(Node.updated_at).where(Node.name == "PACS")).one()
    local = timezone(timedelta(hours=2))
    caps = Capabilities(
        echo=True,
        study_root_get=True,
        qido=True,
        probed_at=datetime(2026, 1, 1, 12, 0, tzinfo=local),
        details={"c-get": "ok", "wado": "HTTP 404"},
    )
    with database.session() as session:
        nodes.save_capabilities(session, "PACS", caps)
    with database.session() as session:
        got = nodes.get_node(session, "PACS")
        after = session.scalars(select(Node.updated_at).where(Node.name == "PACS")).one()
        assert isinstance(got, ServerSpec)
        assert got.capabilities == caps
        assert got.capabilities.details == caps.details
        assert got.capabilities.probed_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
        assert after >= before and after.tzinfo is not None
        with pytest.raises(InputError, match="folder"):
            nodes.save_capabilities(session, "RESEARCH", caps)
        with pytest.raises(NotFound, match="GHOST"):
            nodes.save_capabilities(session, "GHOST", caps)


def test_timestamps_are_aware_utc(database: Database) -> None:
    start = datetime.now(UTC)
    with database.session() as session:
        nodes.add_folder(session, full_folder())
    with database.session() as session:
        row = session.scalars(select(Node)).one()
        assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
        assert start - timedelta(seconds=5) <= row.created_at <= datetime.now(UTC)


BAD_SERVERS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": " PACS"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"name": "a\nb"}, "name"),
    ({"ae_title": "A" * 17}, "ae_title"),
    ({"ae_title": ""}, "ae_title"),
    ({"ae_title": "BACK\\SLASH"}, "ae_title"),
    ({"ae_title": "ÄE"}, "ae_title"),
    ({"host": ""}, "host"),
    ({"host": "a host"}, "host"),
    ({"port": 0}, "port"),
    ({"port": 65536}, "port"),
    ({"port": "104"}, "port"),
    ({"port": True}, "port"),
    ({"max_search_results": 0}, "max_search_results"),
    ({"max_associations": 0}, "max_associations"),
    ({"dicomweb_root_url": "ftp://x"}, "dicomweb_root_url"),
    ({"dicomweb_qido_prefix": "q" * 300}, "dicomweb_qido_prefix"),
]


@pytest.mark.parametrize(("change", "field"), BAD_SERVERS)
def test_bad_server_input_names_the_field(
    database: Database, change: dict[str, Any], field: str
) -> None:
    spec = replace(full_server(), **change)
    with pytest.raises(InputError, match=field), database.session() as session:
        nodes.add_server(session, spec)
    with database.session() as session:
        assert nodes.list_nodes(session) == []


BAD_FOLDERS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"path": Path("relative/dir")}, "path"),
    ({"path": ""}, "path"),
    ({"quota_gb": -1.0}, "quota_gb"),
    ({"warn_size_gb": "lots"}, "warn_size_gb"),
    ({"warn_size_gb": float("nan")}, "warn_size_gb"),
]


@pytest.mark.parametrize(("change", "field"), BAD_FOLDERS)
def test_bad_folder_input_names_the_field(
    database: Database, change: dict[str, Any], field: str
) -> None:
    spec = replace(full_folder(), **change)
    with pytest.raises(InputError, match=field), database.session() as session:
        nodes.add_folder(session, spec)


def test_authorization_header_never_shown(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    spec = full_server()
    assert SECRET not in repr(spec) and SECRET not in str(spec)
    database.engine.echo = True  # statement logging on: parameters must stay hidden
    with caplog.at_level(logging.DEBUG, logger="sqlalchemy"), database.session() as session:
        nodes.add_server(session, spec)
        row = session.scalars(select(DicomServer)).one()
        # Sealed at rest: backups and SQL sessions see a Fernet token, not the header.
        assert is_sealed(row.dicomweb_authorization) and SECRET not in row.dicomweb_authorization
        assert SECRET not in repr(row) and SECRET not in str(row)
        got = nodes.get_node(session, "PACS")
        assert SECRET not in repr(got) and SECRET not in str(got)
    assert "INSERT INTO" in caplog.text  # proves logging was captured
    assert SECRET not in caplog.text


def test_a_credential_sealed_under_another_secret_leaves_the_node_usable(
    database: Database,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with database.session() as session:
        nodes.add_server(session, full_server())
        nodes.add_folder(session, full_folder())
    other = data_dir.parent / "other.key"
    other.write_text("ab" * 32 + "\n")
    monkeypatch.setenv("ADIT_WB_SECRET_FILE", str(other))
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING), database.session() as session:
        got = nodes.get_node(session, "PACS")
        assert [n.name for n in nodes.list_nodes(session)] == ["PACS", "RESEARCH"]
    assert isinstance(got, ServerSpec) and got.dicomweb_authorization is None
    assert got.dicomweb_root_url == full_server().dicomweb_root_url
    assert "node PACS: its DICOMweb credential cannot be opened" in caplog.text
    assert SECRET not in caplog.text
    # Where there is no master secret at all, reading makes none up.
    missing = data_dir.parent / "missing.key"
    monkeypatch.setenv("ADIT_WB_SECRET_FILE", str(missing))
    get_settings.cache_clear()
    with database.session() as session:
        got = nodes.get_node(session, "PACS")
    assert isinstance(got, ServerSpec) and got.dicomweb_authorization is None
    assert not missing.exists()
