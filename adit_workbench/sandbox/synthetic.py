"""Deterministic synthetic CT/MR archives with PHI planted where de-identification must look.

The generator yields valid Part-10 datasets (Explicit VR Little Endian, CT or MR Image
Storage) for patients × studies × series × instances. Everything derives from ``seed`` and
the position of the instance, never from the clock or the order of generation, so the same
arguments always give the same bytes and UIDs, and patient ``n`` is the same whether 2 or
200 patients are generated.

Identifying values are planted on purpose, in the places a pseudonymizer tends to miss:
person names of staff, addresses and phone numbers, a private block (creator
:data:`PRIVATE_CREATOR`) repeating the patient's name and ID, and nested sequences holding
IDs and UIDs. :func:`phi_values` lists what was planted, for leak-scanner tests.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from ..errors import InputError

__all__ = ["PRIVATE_CREATOR", "PRIVATE_GROUP", "generate", "iter_datasets", "phi_values"]

#: Private creator of the block that repeats the patient's name and ID.
PRIVATE_CREATOR = "ADIT_WB_SYNTH"
#: Group of that private block.
PRIVATE_GROUP = 0x0009
# Element offsets inside the private block (tag = (0009, xx00 + offset)).
_PRIV_NAME, _PRIV_ID, _PRIV_ACCESSION = 0x01, 0x02, 0x03

Modality = Literal["CT", "MR", "mixed"]

# fmt: off
_FIRST = ["JOHN", "JANE", "ALEX", "MARIA", "PETER", "ANNA", "LUCAS", "EMMA", "NOAH", "OLIVIA",
          "LIAM", "SOFIA", "ELIAS", "MIA", "FELIX", "LEA", "JONAS", "HANNA", "PAUL", "LAURA"]
_LAST = ["SMITH", "MUELLER", "GARCIA", "ROSSI", "DUBOIS", "NOVAK", "JENSEN", "KOWALSKI", "SILVA",
         "MARTIN", "BAUER", "WAGNER", "MOREAU", "LOPEZ", "BERG", "HOLM", "FISCHER", "WEBER"]
# fmt: on
_STREETS = ["Elm Street", "Harbour Road", "Linden Allee", "Mill Lane", "Church Square"]
_CITIES = ["Springfield", "Rivertown", "Oakham", "Northbridge"]
_STAFF = ["HOUSE^GREGORY", "GREY^MEREDITH", "KILDARE^JAMES", "QUINN^MICHAELA", "ROSS^DOUG"]
_OPERATORS = ["TECH^ROBIN", "TECH^SASHA", "TECH^KIM"]
# (body part, study description, procedure code, series descriptions)
_CT_PROTOCOLS = [
    ("CHEST", "CT CHEST W/O CONTRAST", "CTCH", ["AXIAL 5mm", "AXIAL 1.25mm LUNG", "CORONAL MPR"]),
    ("ABDOMEN", "CT ABDOMEN PELVIS W CONTRAST", "CTAP", ["ARTERIAL", "PORTAL VENOUS", "DELAYED"]),
    ("HEAD", "CT HEAD W/O CONTRAST", "CTHD", ["AXIAL BRAIN", "AXIAL BONE", "SAGITTAL MPR"]),
]
_MR_PROTOCOLS = [
    ("BRAIN", "MR BRAIN W/WO CONTRAST", "MRBR", ["T1 SAG", "T2 AX", "FLAIR AX", "DWI", "T1 POST"]),
    ("KNEE", "MR KNEE RIGHT", "MRKN", ["PD FS COR", "PD SAG", "T1 COR"]),
    ("LSPINE", "MR LUMBAR SPINE", "MRLS", ["T2 SAG", "T1 SAG", "T2 AX"]),
]
_PIXEL_SPACING = 0.7
_STUDY_SPREAD_DAYS = 5 * 365


@dataclass(frozen=True)
class _Patient:
    index: int
    pid: str
    name: str
    birth: date
    sex: str
    address: str
    phone: str
    other_id: str
    first_study_offset: int


@dataclass(frozen=True)
class _Study:
    index: int
    uid: str
    day: date
    time: str
    accession: str
    study_id: str
    modality: str
    body_part: str
    description: str
    procedure_code: str
    series_descriptions: list[str]
    referring: str
    institution: str
    station: str
    serial: str
    operator: str


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=[f"adit-wb-synth:{seed}", *map(str, parts)])


def _patient(seed: int, index: int, pid_prefix: str) -> _Patient:
    # One RNG per patient, so patient n does not depend on how many came before it.
    rng = random.Random(f"{seed}:patient:{index}")
    # Walk the name grid in a seeded order so names stay distinct for the first 360 patients.
    grid = len(_FIRST) * len(_LAST)
    slot = (index * 7919 + seed * 104729) % grid
    name = f"{_LAST[slot % len(_LAST)]}^{_FIRST[slot // len(_LAST)]}"
    return _Patient(
        index=index,
        pid=f"{pid_prefix}{index + 1:04d}",
        name=name,
        birth=date(1940, 1, 1) + timedelta(days=rng.randrange(60 * 365)),
        sex=rng.choice("MF"),
        address=f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}^^{rng.choice(_CITIES)}",
        phone=f"+1-555-{rng.randrange(1000, 10000):04d}-{index:03d}",
        other_id=f"MRN{seed % 100:02d}{index + 1:06d}",
        first_study_offset=rng.randrange(_STUDY_SPREAD_DAYS),
    )


def _study(seed: int, patient: _Patient, index: int, modality: str, start: date) -> _Study:
    rng = random.Random(f"{seed}:study:{patient.index}:{index}")
    if modality == "mixed":
        modality = "CT" if (patient.index + index) % 2 == 0 else "MR"
    protocols = _CT_PROTOCOLS if modality == "CT" else _MR_PROTOCOLS
    body_part, description, code, series_desc = rng.choice(protocols)
    # Later studies of one patient come later in time, as in a real record.
    offset = patient.first_study_offset + index * 400 + rng.randrange(365)
    day = start + timedelta(days=offset)
    return _Study(
        index=index,
        uid=_uid(seed, "study", patient.index, index),
        day=day,
        time=f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
        accession=f"ACC{seed % 100:02d}{patient.index + 1:05d}{index + 1:02d}",
        study_id=f"SID{patient.index + 1:04d}{index + 1:02d}",
        modality=modality,
        body_part=body_part,
        description=description,
        procedure_code=code,
        series_descriptions=series_desc,
        referring=rng.choice(_STAFF),
        institution=rng.choice(["LOOPBACK GENERAL HOSPITAL", "LOCALHOST UNIVERSITY CLINIC"]),
        station=f"{modality}SCAN{rng.randrange(1, 4):02d}",
        serial=f"SN-{modality}-{rng.randrange(10**6, 10**7)}",
        operator=rng.choice(_OPERATORS),
    )


def _phantom(rows: int, cols: int, slice_idx: int, n_slices: int, modality: str,
             rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """An ellipse body with a few organs and noise; CT values are stored with -1024 intercept."""
    y, x = np.ogrid[-1 : 1 : rows * 1j, -1 : 1 : cols * 1j]
    z = (slice_idx / max(n_slices - 1, 1)) * 2 - 1
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1.0 - 0.2 * z * z
    img = np.zeros((rows, cols), dtype=np.float32)
    if modality == "CT":
        img[body] = 1024 + 40
        for cx, cy, r, hu in (
            (-0.35, 0.0, 0.22, -800),
            (0.35, 0.0, 0.22, -800),
            (0, 0.3, 0.08, 700),
        ):
            img[(x - cx) ** 2 + (y - cy) ** 2 <= (r * (1 - 0.3 * abs(z))) ** 2] = 1024 + hu
        img += rng.normal(0, 12, size=img.shape).astype(np.float32)
    else:
        img[body] = 600
        img[(x**2 + y**2) <= (0.4 * (1 - 0.5 * abs(z))) ** 2] = 1200
        img += rng.normal(0, 20, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 4095).astype("<u2")


def _add_time(hhmmss: str, seconds: int) -> str:
    total = (int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6]) + seconds) % 86400
    return f"{total // 3600:02d}{total // 60 % 60:02d}{total % 60:02d}"


def _sequences(ds: Dataset, seed: int, patient: _Patient, study: _Study) -> None:
    other = Dataset()
    other.PatientID = patient.other_id
    other.IssuerOfPatientID = "LOOPBACK_MRN"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])

    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    ref_study.ReferencedSOPInstanceUID = study.uid
    ds.ReferencedStudySequence = Sequence([ref_study])

    code = Dataset()
    code.CodeValue = study.procedure_code
    code.CodingSchemeDesignator = "99ADITWB"
    code.CodeMeaning = study.description
    ds.ProcedureCodeSequence = Sequence([code])

    request = Dataset()
    request.RequestedProcedureID = f"RP{study.accession}"
    request.ScheduledProcedureStepID = f"SPS{study.accession}"
    request.AccessionNumber = study.accession
    request.StudyInstanceUID = study.uid
    request.RequestedProcedureDescription = study.description
    # A sequence inside a sequence item: scanners must recurse, not just look one level down.
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    inner.ReferencedSOPInstanceUID = _uid(seed, "order", patient.index, study.index)
    request.ReferencedStudySequence = Sequence([inner])
    ds.RequestAttributesSequence = Sequence([request])


def _instance(seed: int, patient: _Patient, study: _Study, series_idx: int, inst_idx: int,
              n_instances: int, rows: int, cols: int) -> Dataset:  # fmt: skip
    modality = study.modality
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.SOPInstanceUID = _uid(seed, "inst", patient.index, study.index, series_idx, inst_idx)
    study_date = study.day.strftime("%Y%m%d")
    series_time = _add_time(study.time, 60 * series_idx)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = study.time
    ds.SeriesTime = series_time
    ds.AcquisitionTime = _add_time(series_time, inst_idx)
    ds.ContentTime = _add_time(series_time, inst_idx + 1)
    ds.AccessionNumber = study.accession
    ds.Modality = modality
    ds.Manufacturer = "SYNTHETIC"
    ds.InstitutionName = study.institution
    ds.InstitutionAddress = "1 Loopback Way^^Localhost^^127001"
    ds.ReferringPhysicianName = study.referring
    ds.StationName = study.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = study.series_descriptions[series_idx % len(study.series_descriptions)]
    ds.InstitutionalDepartmentName = "RADIOLOGY"
    ds.PhysiciansOfRecord = study.referring
    ds.PerformingPhysicianName = _STAFF[(patient.index + study.index + 1) % len(_STAFF)]
    ds.OperatorsName = study.operator
    ds.ManufacturerModelName = "AditWbSynth"
    ds.PatientName = patient.name
    ds.PatientID = patient.pid
    ds.IssuerOfPatientID = "LOOPBACK"
    ds.PatientBirthDate = patient.birth.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.OtherPatientIDs = patient.other_id
    ds.PatientAge = f"{(study.day - patient.birth).days // 365:03d}Y"
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.BodyPartExamined = study.body_part
    thickness = 5.0 if modality == "CT" else 3.0
    ds.SliceThickness = f"{thickness:.1f}"
    if modality == "CT":
        ds.KVP = "120"
        ds.ConvolutionKernel = "STANDARD"
    else:
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.EchoTrainLength = "1"
        ds.MagneticFieldStrength = "1.5"
    ds.DeviceSerialNumber = study.serial
    ds.SoftwareVersions = "1.0"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = _uid(seed, "series", patient.index, study.index, series_idx)
    ds.StudyID = study.study_id
    ds.SeriesNumber = series_idx + 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = inst_idx + 1
    z = round(-inst_idx * thickness, 2)
    ds.ImagePositionPatient = [-0.5 * cols * _PIXEL_SPACING, -0.5 * rows * _PIXEL_SPACING, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = _uid(seed, "for", patient.index, study.index)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [_PIXEL_SPACING, _PIXEL_SPACING]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if modality == "CT":
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    else:
        ds.WindowCenter, ds.WindowWidth = "600", "1200"
    _sequences(ds, seed, patient, study)

    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(_PRIV_NAME, "LO", patient.name)
    block.add_new(_PRIV_ID, "LO", patient.pid)
    block.add_new(_PRIV_ACCESSION, "SH", study.accession)

    rng = np.random.default_rng([seed, patient.index, study.index, series_idx, inst_idx])
    pixels = _phantom(rows, cols, inst_idx, n_instances, modality, rng)
    ds.add_new(0x7FE00010, "OW", pixels.tobytes())

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ADIT_WB_SYNTH"
    ds.file_meta = meta
    return ds


def _check(patients: int, studies: int, series: int, instances: int, rows: int, cols: int,
           modality: str, pid_prefix: str) -> None:  # fmt: skip
    counts = {"patients": patients, "studies": studies, "series": series, "instances": instances}
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise InputError(f"synthetic data: {name} must be a positive integer, got {value!r}")
    if not (8 <= rows <= 4096 and 8 <= cols <= 4096):
        raise InputError(f"synthetic data: rows and cols must be 8-4096, got {rows}x{cols}")
    if modality not in ("CT", "MR", "mixed"):
        raise InputError(f"synthetic data: modality must be CT, MR or mixed, got {modality!r}")
    if not pid_prefix.isascii() or len(pid_prefix) + 4 > 64 or "\\" in pid_prefix:
        raise InputError("synthetic data: pid_prefix must be short ASCII without backslash")


def iter_datasets(
    *,
    patients: int = 2,
    studies: int = 1,
    series: int = 2,
    instances: int = 3,
    rows: int = 64,
    cols: int = 64,
    modality: Modality = "CT",
    seed: int = 0,
    pid_prefix: str = "SYN",
    start_date: date = date(2020, 1, 1),
) -> Iterator[Dataset]:
    """Yield synthetic instances one at a time, file meta included.

    Args:
        patients: Number of patients; IDs are ``f"{pid_prefix}{n:04d}"`` from 1.
        studies: Studies per patient.
        series: Series per study.
        instances: Instances (slices) per series.
        rows: Image rows (64 gives ~10 kB files, 512 gives ~0.5 MB).
        cols: Image columns.
        modality: ``"CT"``, ``"MR"`` or ``"mixed"`` (alternates per study, so a patient
            with two or more studies has both modalities).
        seed: Everything (UIDs, names, dates, pixels) is a function of the seed.
        pid_prefix: Prefix of patient IDs, to keep several archives apart.
        start_date: Earliest study date. First studies spread over the following five
            years; each further study of a patient comes about a year after the one before.

    Yields:
        One :class:`pydicom.Dataset` per instance, in patient/study/series/instance order.

    Raises:
        InputError: If a count, the image size, the modality or the prefix is invalid.
    """
    _check(patients, studies, series, instances, rows, cols, modality, pid_prefix)
    for p in range(patients):
        patient = _patient(seed, p, pid_prefix)
        for s in range(studies):
            study = _study(seed, patient, s, modality, start_date)
            for se in range(series):
                for i in range(instances):
                    yield _instance(seed, patient, study, se, i, instances, rows, cols)


def generate(out_dir: str | Path, **kwargs: Any) -> list[Path]:
    """Write a synthetic archive as Part-10 files and return their paths.

    Files go to ``<out_dir>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/
    <SOPInstanceUID>.dcm``; existing files with the same name are overwritten.

    Args:
        out_dir: Folder to write into (created if missing).
        **kwargs: The keyword arguments of :func:`iter_datasets`.

    Returns:
        The paths written, in generation order.
    """
    root = Path(out_dir)
    paths: list[Path] = []
    for ds in iter_datasets(**kwargs):
        folder = root / str(ds.PatientID) / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


_PHI_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "PatientAddress",
    "PatientTelephoneNumbers", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord",
    "StationName", "DeviceSerialNumber", "StudyID", "RequestedProcedureID",
    "ScheduledProcedureStepID",
)  # fmt: skip
_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_UID_KEYWORDS = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID", "MediaStorageSOPInstanceUID",
)  # fmt: skip


def phi_values(ds: Dataset, *, dates: bool = True, uids: bool = True) -> set[str]:
    """The identifying strings planted in a (synthetic) dataset.

    Walks the dataset, its sequences at any depth and its file meta, and collects the
    values of identifying attributes plus every value of the :data:`PRIVATE_CREATOR`
    block. A de-identified copy should contain none of them (except what the chosen
    options retain, hence the switches).

    Args:
        ds: A dataset, typically one from :func:`iter_datasets`.
        dates: Include study/series/acquisition/content dates (birth date is always in).
        uids: Include instance, series, study, frame-of-reference and referenced UIDs.

    Returns:
        Non-empty strings, e.g. ``{"SYN0001", "SMITH^JOHN", "19630412", ...}``. Patient
        sex and age are left out: they are characteristics and too short to scan for.
    """
    keywords = set(_PHI_KEYWORDS)
    if dates:
        keywords.update(_DATE_KEYWORDS)
    if uids:
        keywords.update(_UID_KEYWORDS)
    found: set[str] = set()

    def walk(item: Dataset) -> None:
        creator_tags = {
            elem.tag.element << 8
            for elem in item.group_dataset(PRIVATE_GROUP)
            if elem.tag.element < 0x100 and elem.value == PRIVATE_CREATOR
        }
        for elem in item:
            if elem.VR == "SQ":
                for sub in elem.value:
                    walk(sub)
                continue
            private_hit = elem.tag.group == PRIVATE_GROUP and (elem.tag.element & 0xFF00) in (
                creator_tags
            )
            if (elem.keyword in keywords or private_hit) and elem.value not in (None, ""):
                values = elem.value if elem.VM > 1 else [elem.value]
                found.update(str(v) for v in values if str(v))

    walk(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        walk(meta)
    return found
