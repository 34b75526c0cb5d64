"""Output is valid DICOM: C-STORE it into a real Orthanc and compare the hierarchy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE, StoragePresentationContexts

from adit_workbench.deid import Option, Profile, Pseudonymizer, pseudonymize_folder

from .conftest import SECRET

pytestmark = pytest.mark.orthanc


def _store(server: Any, files: list[Path]) -> None:
    try:
        from adit_workbench.dicom import nodelay

        nodelay.install()
    except ImportError:  # pragma: no cover - only slower without it
        pass
    ae = AE(ae_title="DEID_TEST")
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate(server.host, server.dicom_port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        for path in files:
            status = assoc.send_c_store(pydicom.dcmread(path))
            assert status and status.Status == 0x0000
    finally:
        assoc.release()


def _hierarchy(server: Any) -> Counter[tuple[str, str, str]]:
    """(PatientID, StudyInstanceUID, SeriesInstanceUID) → number of instances, from REST."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for study in server.rest("GET", "/studies?expand"):
        patient_id = study["PatientMainDicomTags"]["PatientID"]
        study_uid = study["MainDicomTags"]["StudyInstanceUID"]
        for series_id in study["Series"]:
            series = server.rest("GET", f"/series/{series_id}")
            key = (patient_id, study_uid, series["MainDicomTags"]["SeriesInstanceUID"])
            counts[key] = len(series["Instances"])
    return counts


def test_pseudonymized_hierarchy_in_orthanc(orthanc: Any, corpus: Path, tmp_path: Path) -> None:
    orthanc.clear()
    p = Pseudonymizer(SECRET, Profile(Option.RETAIN_PATIENT_CHARACTERISTICS))
    report = pseudonymize_folder(corpus, tmp_path / "out", p, workers=2)
    assert report.ok and len(report.written) == 12
    outputs = sorted((tmp_path / "out").rglob("*.dcm"))
    _store(orthanc, outputs)
    expected: Counter[tuple[str, str, str]] = Counter()
    for path in sorted(corpus.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        key = (p.pseudonym(ds.PatientID), p.uid(ds.StudyInstanceUID), p.uid(ds.SeriesInstanceUID))
        expected[key] += 1
    stats = orthanc.statistics()
    assert stats["CountPatients"] == 3 and stats["CountStudies"] == 6
    assert stats["CountInstances"] == 12
    assert _hierarchy(orthanc) == expected
    orthanc.clear()
