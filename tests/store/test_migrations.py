"""The packaged migrations produce exactly the schema the models describe."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, String

from adit_workbench.store import Base, Database
from adit_workbench.store.database import MIGRATIONS_DIR


def test_models_match_migrations(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_one_linear_history_shipped_in_the_package(empty_database: Database) -> None:
    script = ScriptDirectory.from_config(empty_database.alembic_config())
    assert script.dir == str(MIGRATIONS_DIR)
    assert len(script.get_heads()) == 1
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()


def test_offline_sql_for_review(empty_database: Database) -> None:
    """``alembic upgrade --sql`` works without a connection: admins may review the DDL."""
    config = empty_database.alembic_config()
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE node" in sql and "CREATE TABLE dicom_server" in sql
    assert empty_database.current_revision() is None  # nothing ran


def test_comparison_catches_drift(database: Database) -> None:
    """Negative control: the check above would notice a model the migrations lack."""
    drifted = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["node"].append_column(Column("extra", Integer, nullable=True))
    drifted.tables["dicom_folder"].c.path.type = String(10)
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), drifted)
    kinds = {entry[0][0] if isinstance(entry, list) else entry[0] for entry in diff}
    assert "add_column" in kinds and "modify_type" in kinds


def test_task_modalities_up_and_down(database: Database) -> None:
    """0005 adds ``job_task.modalities``; its downgrade drops the column, not the tasks."""
    from sqlalchemy import inspect, select, text

    from adit_workbench.store.jobs import Job, Task

    def columns() -> set[str]:
        with database.engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("job_task")}

    with database.session() as session:
        job = Job(kind="selective_transfer", owner="u", status="SUCCESS")
        job.tasks.append(Task(status="SUCCESS", modalities={"CT": 3, "MR": 2}))
        session.add(job)
    with database.session() as session:
        assert session.scalar(select(Task.modalities)) == {"CT": 3, "MR": 2}
    config = database.alembic_config()
    command.downgrade(config, "0004")
    assert database.current_revision() == "0004"
    assert "modalities" not in columns()
    command.upgrade(config, "head")
    assert database.current_revision() == database.head_revision()
    assert "modalities" in columns()
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT status, modalities FROM job_task")).all()
    assert [tuple(r) for r in rows] == [("SUCCESS", None)]


def test_stored_node_credentials_are_sealed_by_0006(
    database: Database, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written before 0006 held the header in clear: the upgrade seals them, the
    downgrade opens them again, and the store reads the sealed value back."""
    from sqlalchemy import text

    from adit_workbench.config import get_settings
    from adit_workbench.dicom.spec import ServerSpec
    from adit_workbench.errors import ConfigurationError
    from adit_workbench.store import nodes
    from adit_workbench.store.sealed import is_sealed

    spec = ServerSpec("OLD", "OLD", "pacs", 104, dicomweb_authorization="Bearer clear-token")
    with database.session() as session:
        nodes.add_server(session, spec)

    def stored() -> str:
        with database.engine.connect() as conn:
            return str(
                conn.execute(text("SELECT dicomweb_authorization FROM dicom_server")).scalar()
            )

    assert is_sealed(stored())
    config = database.alembic_config()
    command.downgrade(config, "0005")  # as a row written before 0006 was
    assert stored() == "Bearer clear-token"
    # Where the master secret is not, 0006 refuses rather than seal under a new one.
    monkeypatch.setenv("ADIT_WB_SECRET_FILE", str(data_dir / "elsewhere.key"))
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="ADIT_WB_SECRET_FILE"):
        command.upgrade(config, "head")
    assert stored() == "Bearer clear-token" and database.current_revision() == "0005"
    monkeypatch.delenv("ADIT_WB_SECRET_FILE")
    get_settings.cache_clear()
    command.upgrade(config, "head")
    assert is_sealed(stored()) and "clear-token" not in stored()
    with database.session() as session:
        got = nodes.get_node(session, "OLD")
    assert isinstance(got, ServerSpec) and got.dicomweb_authorization == "Bearer clear-token"
