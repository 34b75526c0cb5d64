"""Every fetch method x every destination kind, with and without pseudonymization.

Against the two real Orthancs: ORTHANC1 holds a 1 x 2 x 3 study; servers deliver to
ORTHANC2 (C-STORE or STOW-RS), the rest to folders. Every pseudonymized output passes
the leak scanner (dates aside: the ADIT profile keeps study dates on purpose).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from adit_workbench.deid import Pseudonymizer
from adit_workbench.dicom.server import DicomServer
from adit_workbench.transfer import (
    ArchiveDestination,
    FolderDestination,
    NiftiDestination,
    ServerDestination,
    TransferStatus,
    transfer_study,
)
from tests.servers.orthanc import OrthancServer
from tests.transfer.conftest import dicom_files, leaks, server_files, zip_datasets

FETCH = ["cget", "cmove", "wado"]
DESTINATIONS = ["cstore", "stow", "folder", "zip", "nifti"]
PASSWORD = "s3cret-pw"


def _destination(kind: str, server: DicomServer, out: Path) -> object:
    if kind == "cstore":
        return ServerDestination(server, via="dimse")
    if kind == "stow":
        return ServerDestination(server, via="dicomweb")
    if kind == "folder":
        return FolderDestination(out, "job-1")
    if kind == "zip":
        return ArchiveDestination(out, PASSWORD, "job-1")
    return NiftiDestination(out, "job-1")


@pytest.mark.parametrize("pseudonymize", [False, True], ids=["plain", "pseudo"])
@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("via", FETCH)
def test_fetch_by_destination(
    via: str,
    kind: str,
    pseudonymize: bool,
    source: DicomServer,
    destination: DicomServer,
    orthanc2: OrthancServer,
    originals: list[Dataset],
    study_uid: str,
    pseudonymizer: Pseudonymizer,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = transfer_study(
        source,
        _destination(kind, destination, out),
        study_uid,
        via=via,
        pseudonymizer=pseudonymizer if pseudonymize else None,
    )
    assert result.status is TransferStatus.SUCCESS, result
    assert (result.expected, result.delivered, result.skipped) == (6, 6, 0)
    if kind in ("cstore", "stow"):
        outputs = server_files(orthanc2, tmp_path / "fetched")
        assert result.where == destination.name
        if via == "cmove" and kind == "cstore" and not pseudonymize:
            assert result.via == "direct-move"
    elif kind == "folder":
        outputs = dicom_files(out / "job-1")
        rel = outputs[0].relative_to(out / "job-1")
        patient = "SUBJ-01" if pseudonymize else str(originals[0].PatientID)
        assert rel.parts[0] == patient and rel.parts[1].endswith("-CT")
        assert rel.parts[2] in ("1-ARTERIAL", "2-PORTAL VENOUS")
    elif kind == "zip":
        archive = out / "job-1.zip"
        assert result.where == str(archive)
        outputs = zip_datasets(archive, PASSWORD, tmp_path / "unzipped")
        assert all(p.relative_to(tmp_path / "unzipped").parts[0] == "job-1" for p in outputs)
    else:
        niftis = sorted(out.rglob("*.nii.gz"))
        sidecars = sorted(out.rglob("*.json"))
        assert len(niftis) == 2 and len(sidecars) == 2, sorted(out.rglob("*"))
        outputs = sidecars
    if kind != "nifti":
        assert len(outputs) == 6
        delivered = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in outputs}
        original = {str(ds.SOPInstanceUID) for ds in originals}
        assert (delivered == original) != pseudonymize
    if pseudonymize:
        report = leaks(originals, outputs, root=out if kind in ("folder", "nifti") else None)
        assert not report, str(report)
    assert not [p for p in out.rglob(".wb-staging-*")], "staging left behind"
