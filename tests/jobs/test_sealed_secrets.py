"""No secret at rest in clear text: an archive password is sealed in the job row (SQLite
and PostgreSQL), unsealed only by the worker, and the archive still opens with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from adit_workbench.access import Access
from adit_workbench.config import Settings
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.query import find_studies
from adit_workbench.errors import ConfigurationError
from adit_workbench.jobs import JobStatus
from adit_workbench.jobs.kinds import selective_transfer
from adit_workbench.store import nodes as node_store
from adit_workbench.store.jobs import Job
from adit_workbench.store.sealed import is_sealed, seal, unseal
from tests.transfer.conftest import zip_datasets

from .conftest import Harness

PASSWORD = "Zebra-Quartz-7781"


def test_seal_round_trip_and_other_secrets(job_settings: Settings, tmp_path: Path) -> None:
    sealed = seal(job_settings, PASSWORD)
    assert is_sealed(sealed) and PASSWORD not in sealed
    assert sealed != seal(job_settings, PASSWORD)  # a fresh IV each time
    assert unseal(job_settings, sealed) == PASSWORD
    nowhere = Settings(data_dir=tmp_path / "nowhere")  # no master secret: none made up
    with pytest.raises(ConfigurationError, match="no master secret here"):
        unseal(nowhere, sealed)
    assert not nowhere.secret_path.exists()
    other = Settings(data_dir=tmp_path / "elsewhere")
    other.master_secret()  # another master secret
    with pytest.raises(ConfigurationError, match="another master secret") as info:
        unseal(other, sealed)
    assert PASSWORD not in str(info.value)
    with pytest.raises(ConfigurationError, match="unsealed"):
        unseal(job_settings, PASSWORD)


@pytest.mark.parametrize("harness", ["rq"], indirect=True)  # queued, not yet run
def test_archive_password_is_sealed_in_the_row_and_opens_the_archive(
    harness: Harness, alice: Access, tmp_path: Path
) -> None:
    with harness.database.session() as session:
        spec = node_store.get_node(session, "SANDBOX")
    node = open_node(spec, harness.settings)
    try:
        study = next(iter(find_studies(node)))
    finally:
        node.close()
    job = selective_transfer(
        harness.manager(alice), [study], source="SANDBOX", destination="OUT",
        pseudonym="SEALED", archive_password=PASSWORD,
    )  # fmt: skip
    # What anyone with SQL access to the database sees while the job waits.
    with harness.database.engine.connect() as conn:
        rows = [
            *conn.execute(text("SELECT * FROM job WHERE id = :id"), {"id": job.id}),
            *conn.execute(text("SELECT * FROM job_task WHERE job_id = :id"), {"id": job.id}),
        ]
    dump = " ".join(str(value) for row in rows for value in row)
    assert PASSWORD not in dump
    with harness.database.session() as session:
        row = session.scalars(select(Job).where(Job.id == job.id)).one()
        assert is_sealed(row.archive_password) and row.has_archive_password
    harness.drain()
    assert job.wait(30, progress=False).status is JobStatus.SUCCESS
    [archive] = (tmp_path / "out").glob("*.zip")
    assert zip_datasets(archive, PASSWORD, tmp_path / "x")
    with pytest.raises(RuntimeError):  # pyzipper: a wrong password opens nothing
        zip_datasets(archive, "wrong", tmp_path / "y")
