"""``adit-workbench transfer`` end to end: nodes resolved through the facade."""

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
    out = capsys.readouterr().out
    root = (tmp_path / "out" / "cli-job").resolve()
    assert f"SUCCESS: 6 of 6 instances delivered to {root} (via cget" in out
    files = dicom_files(root)
    assert len(files) == 6 and {p.relative_to(root).parts[0] for p in files} == {"SUBJ-9"}
    assert main(args) == 0
    assert "6 already there" in capsys.readouterr().out


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
                 "--series", series, "--pseudonymize", "--archive-password", "pw",
                 "--folder-name", "arch"]) == 0  # fmt: skip
    assert "3 of 3 instances delivered" in capsys.readouterr().out
    assert len(zip_datasets(tmp_path / "out" / "arch.zip", "pw", tmp_path / "x")) == 3
    orthanc2.clear()
    assert main(["transfer", "--from", "ORTHANC1", "--to", "ORTHANC2", "--study", study_uid]) == 0
    assert "6 of 6 instances delivered to ORTHANC2" in capsys.readouterr().out
    assert orthanc2.statistics()["CountInstances"] == 6


def test_cli_rejects_archive_to_a_server(
    wb: Workbench, study_uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transfer", "--from", "ORTHANC1", "--to", "ORTHANC2", "--study", study_uid,
                 "--nifti"]) == 2  # fmt: skip
    assert "must be a folder" in capsys.readouterr().err
