"""``adit-workbench transfer`` end to end: a selective-transfer job through the facade."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset

from adit_workbench.cli import _common, main
from adit_workbench.config import Settings
from adit_workbench.workbench import Workbench, connect
from tests.servers.orthanc import OrthancServer
from tests.transfer.conftest import ALL, dicom_files, zip_datasets


@pytest.fixture
def wb(
    tsettings: Settings, orthanc: OrthancServer, orthanc2: OrthancServer, tmp_path: Path
) -> Iterator[Workbench]:
    workbench = connect()
    for server in (orthanc, orthanc2):
        workbench.add_server(
            server.name,
            ae_title=server.ae_title,
            host=server.host,
            port=server.dicom_port,
            dicomweb_url=server.dicomweb_url,
            capabilities=ALL,
            max_associations=3,
        )
    (tmp_path / "out").mkdir()
    workbench.add_folder("OUT", tmp_path / "out")
    _common.reset()
    yield workbench
    workbench.close()
    _common.reset()


def test_cli_pseudonymized_to_a_folder(
    wb: Workbench,
    originals: list[Dataset],
    study_uid: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["transfer", "--from", "ORTHANC1", "--to", "OUT", "--study", study_uid,
            "--pseudonym", "SUBJ-9", "--trial-id", "T9", "--via", "cget",
            "--folder-name", "cli-job"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    job_id = int(out.splitlines()[0])
    assert f"job {job_id}: SUCCESS" in err
    root = (tmp_path / "out" / "cli-job").resolve()
    files = dicom_files(root)
    assert len(files) == 6 and {p.relative_to(root).parts[0] for p in files} == {"SUBJ-9"}
    # A job like any other: its row, its owner, its audit row.
    job = wb.jobs.get(job_id)
    assert job.kind == "selective_transfer" and job.summary()["owner"] == wb.user
    assert any(e.details.get("job") == job_id for e in wb.access.admin.audit_events())
    assert main(args) == 0
    assert "SUCCESS" in capsys.readouterr().err
    assert len(dicom_files(root)) == 6


def test_cli_archive_series_and_server(
    wb: Workbench,
    originals: list[Dataset],
    study_uid: str,
    orthanc2: OrthancServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    series = str(originals[0].SeriesInstanceUID)
    assert main(["transfer", "--from", "ORTHANC1", "--to", "OUT", "--study", study_uid,
                 "--series", series, "--archive-password", "pw",
                 "--folder-name", "arch"]) == 0  # fmt: skip
    assert "SUCCESS" in capsys.readouterr().err
    assert len(zip_datasets(tmp_path / "out" / "arch.zip", "pw", tmp_path / "x")) == 3
    orthanc2.clear()
    assert main(["transfer", "--from", "ORTHANC1", "--to", "ORTHANC2", "--study", study_uid]) == 0
    assert "SUCCESS" in capsys.readouterr().err
    assert orthanc2.statistics()["CountInstances"] == 6


def test_cli_rejects_archive_to_a_server(
    wb: Workbench, study_uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The job is created like any other; its task fails with the reason, nothing is sent.
    assert main(["transfer", "--from", "ORTHANC1", "--to", "ORTHANC2", "--study", study_uid,
                 "--nifti"]) == 1  # fmt: skip
    out, err = capsys.readouterr()
    assert "FAILURE" in err and "must be a folder" in out
