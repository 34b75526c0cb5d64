"""The synthetic archive: deterministic, valid Part-10, PHI where scanners must look."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from adit_workbench.errors import InputError
from adit_workbench.sandbox.synthetic import (
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    generate,
    iter_datasets,
    phi_values,
)


def _digest(**kwargs: object) -> str:
    sha = hashlib.sha256()
    for ds in iter_datasets(**kwargs):  # type: ignore[arg-type]
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        sha.update(buf.getvalue())
    return sha.hexdigest()


def test_same_seed_same_bytes_other_seed_other_uids() -> None:
    assert _digest(patients=2, modality="mixed", seed=3) == _digest(
        patients=2, modality="mixed", seed=3
    )
    uids_a = {ds.SOPInstanceUID for ds in iter_datasets(seed=1)}
    uids_b = {ds.SOPInstanceUID for ds in iter_datasets(seed=2)}
    assert not uids_a & uids_b


def test_patient_n_does_not_depend_on_patient_count() -> None:
    small = [ds.SOPInstanceUID for ds in iter_datasets(patients=1, seed=5)]
    large = [ds.SOPInstanceUID for ds in iter_datasets(patients=4, seed=5)]
    assert large[: len(small)] == small


def test_counts_hierarchy_and_distinct_ids() -> None:
    dss = list(iter_datasets(patients=3, studies=2, series=2, instances=4, pid_prefix="TST"))
    assert len(dss) == 3 * 2 * 2 * 4
    assert {ds.PatientID for ds in dss} == {"TST0001", "TST0002", "TST0003"}
    assert len({ds.PatientName for ds in dss}) == 3
    assert len({ds.StudyInstanceUID for ds in dss}) == 6
    assert len({ds.SeriesInstanceUID for ds in dss}) == 12
    assert len({ds.SOPInstanceUID for ds in dss}) == 48
    assert len({ds.AccessionNumber for ds in dss}) == 6
    for ds in dss:
        last, first = str(ds.PatientName).split("^")
        assert last.isupper() and first.isupper()


def test_mixed_gives_both_modalities_per_patient() -> None:
    dss = list(iter_datasets(patients=2, studies=2, series=1, instances=1, modality="mixed"))
    for pid in ("SYN0001", "SYN0002"):
        mods = {ds.Modality for ds in dss if ds.PatientID == pid}
        assert mods == {"CT", "MR"}
    assert {ds.SOPClassUID for ds in dss} == {CTImageStorage, MRImageStorage}


def test_dates_start_at_start_date_and_geometry_is_consistent() -> None:
    dss = list(iter_datasets(patients=2, instances=4, start_date=date(2021, 6, 1)))
    assert all("20210601" <= ds.StudyDate <= "20270101" for ds in dss)
    two = list(iter_datasets(patients=3, studies=3, series=1, instances=1))
    for pid in ("SYN0001", "SYN0002", "SYN0003"):
        dates = [ds.StudyDate for ds in two if ds.PatientID == pid]
        assert dates == sorted(dates) and len(set(dates)) == 3
    series = [ds for ds in dss if ds.SeriesInstanceUID == dss[0].SeriesInstanceUID]
    zs = [float(ds.ImagePositionPatient[2]) for ds in series]
    assert zs == sorted(zs, reverse=True) and len(set(zs)) == 4
    assert len({ds.FrameOfReferenceUID for ds in series}) == 1
    assert [int(ds.InstanceNumber) for ds in series] == [1, 2, 3, 4]


def test_generate_writes_valid_part10(tmp_path: Path) -> None:
    paths = generate(tmp_path, patients=1, series=1, instances=2, rows=32, cols=48, modality="MR")
    assert len(paths) == 2
    for path in paths:
        ds = pydicom.dcmread(path)
        assert path.relative_to(tmp_path).parts[:3] == (
            ds.PatientID,
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
        )
        assert path.name == f"{ds.SOPInstanceUID}.dcm"
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.pixel_array.shape == (32, 48)
        assert ds.pixel_array.dtype.itemsize == 2
    validator = shutil.which("dciodvfy")
    if validator:
        out = subprocess.run([validator, str(paths[0])], capture_output=True, text=True)
        assert "Error" not in out.stderr, out.stderr


def test_size_scales_with_rows_and_cols() -> None:
    (ds,) = iter_datasets(patients=1, series=1, instances=1, rows=512, cols=512)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert 512 * 512 * 2 < len(buf.getvalue()) < 512 * 512 * 2 + 8192


def test_phi_is_planted_everywhere_scanners_must_look() -> None:
    ds = next(iter_datasets(seed=9))
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    assert block[0x01].value == str(ds.PatientName)
    assert block[0x02].value == ds.PatientID
    assert ds.OtherPatientIDsSequence[0].PatientID == ds.OtherPatientIDs
    request = ds.RequestAttributesSequence[0]
    assert request.AccessionNumber == ds.AccessionNumber
    assert request.StudyInstanceUID == ds.StudyInstanceUID
    assert request.ReferencedStudySequence[0].ReferencedSOPInstanceUID
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID
    assert ds.ProcedureCodeSequence[0].CodeMeaning == ds.StudyDescription
    for keyword in (
        "PatientBirthDate", "PatientAddress", "PatientTelephoneNumbers", "InstitutionName",
        "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
        "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "StationName",
        "DeviceSerialNumber", "StudyID", "PatientAge", "PatientSex",
    ):  # fmt: skip
        assert str(ds.get(keyword, "")), keyword

    values = phi_values(ds)
    expected = {
        str(ds.PatientName), ds.PatientID, ds.OtherPatientIDs, ds.PatientBirthDate,
        ds.PatientAddress, ds.AccessionNumber, ds.StudyInstanceUID, ds.SOPInstanceUID,
        request.RequestedProcedureID, request.ReferencedStudySequence[0].ReferencedSOPInstanceUID,
        ds.StudyDate, str(ds.OperatorsName), ds.DeviceSerialNumber,
    }  # fmt: skip
    assert expected <= values
    assert PRIVATE_CREATOR not in values
    lean = phi_values(ds, dates=False, uids=False)
    assert ds.StudyInstanceUID not in lean and ds.StudyDate not in lean
    assert ds.PatientBirthDate in lean


def test_phi_values_finds_private_block_alone() -> None:
    ds = pydicom.Dataset()
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", "DOE^JANE")
    other = ds.private_block(PRIVATE_GROUP, "SOMEONE ELSE", create=True)
    other.add_new(0x01, "LO", "NOT PLANTED")
    assert phi_values(ds) == {"DOE^JANE"}


@pytest.mark.parametrize(
    "kwargs",
    [{"patients": 0}, {"instances": -1}, {"modality": "US"}, {"rows": 2}, {"pid_prefix": "A\\B"}],
)
def test_invalid_arguments_raise_input_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        next(iter_datasets(**kwargs))  # type: ignore[arg-type]
