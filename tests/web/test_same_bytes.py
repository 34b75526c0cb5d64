"""One operation, one code path: the same study with the same pseudonym and project gives
byte-identical files through the facade, the REST API (remote workbench), the CLI and a
batch job (issue 12, "one operation, one code path")."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from adit_workbench.cli import _common, main
from adit_workbench.config import Settings, get_settings
from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.remote import RemoteWorkbench
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.workbench import Workbench
from tests.web.conftest import People, Running

ENTRY_POINTS = ("API", "REST", "CLI", "BATCH")


def _contents(root: Path) -> list[str]:
    """Digests of the delivered files (paths differ by job folder; bytes must not)."""
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*.dcm")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_entry_point_writes_the_same_bytes(
    service_settings: Settings,
    database: Database,
    service: Running,
    people: People,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ENTRY_POINTS:
        (tmp_path / name).mkdir()
        with database.session() as session:
            node_store.add_folder(session, FolderSpec(f"OUT_{name}", tmp_path / name))
        people.admin.admin.grant(
            people.access["alice"].profile().groups[0], f"OUT_{name}", destination=True
        )
    options = {"pseudonym": "SUBJ-9", "trial_protocol_id": "T9"}

    local = Workbench(service_settings, database, people.access["alice"])
    [study] = local.node("SANDBOX").find_studies(patient_id="SYN*", limit=1)
    local.transfer([study], to="OUT_API", **options).wait(300, progress=False)
    local.close()

    remote = RemoteWorkbench(service.url, people.token("alice"))
    batch = pd.DataFrame(
        {
            "PatientID": [study.patient_id],
            "StudyInstanceUID": [study.study_uid],
            "Pseudonym": [options["pseudonym"]],
        }
    )
    # A DataFrame, as a researcher filters hits.df: rows, never its column names.
    remote.transfer(batch[["PatientID", "StudyInstanceUID"]], source="SANDBOX",
                    to="OUT_REST", **options).wait(300, progress=False)  # fmt: skip
    remote.batch_transfer(batch, source="SANDBOX", to="OUT_BATCH",
                          trial_protocol_id="T9").wait(300, progress=False)  # fmt: skip
    remote.close()

    monkeypatch.setenv("ADIT_WB_OPERATOR", "alice")
    get_settings.cache_clear()
    _common.reset()
    try:
        code = main(["transfer", "--from", "SANDBOX", "--to", "OUT_CLI",
                     "--study", study.study_uid, "--pseudonym", "SUBJ-9",
                     "--trial-id", "T9"])  # fmt: skip
    finally:
        _common.reset()
        get_settings.cache_clear()
    assert code == 0

    by_entry = {name: _contents(tmp_path / name) for name in ENTRY_POINTS}
    assert by_entry["API"], "nothing delivered"
    for name in ENTRY_POINTS[1:]:
        assert by_entry[name] == by_entry["API"], f"{name} differs from the facade"
