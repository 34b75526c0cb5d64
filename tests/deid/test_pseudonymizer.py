"""The pseudonymizer per option, on the synthetic PHI-rich corpus and pydicom's files."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from adit_workbench.deid import (
    Option,
    Profile,
    Pseudonymizer,
    date_shift,
    explain,
    pseudonymize_file,
    scan_leaks,
)
from adit_workbench.sandbox.synthetic import PRIVATE_CREATOR, phi_values

from .conftest import SECRET, bundled_path

Check = Callable[[Dataset, Dataset], None]


def _run(files: list[Path], profile: Profile, out: Path) -> list[tuple[Dataset, Dataset, Path]]:
    p = Pseudonymizer(SECRET, profile)
    results = []
    for i, path in enumerate(files):
        dst = out / f"{i}.dcm"
        pseudonymize_file(p, path, dst)
        results.append((pydicom.dcmread(path), pydicom.dcmread(dst), dst))
    return results


def _planted(original: Dataset, *, dates: bool = True, uids: bool = True) -> set[str]:
    return {v for v in phi_values(original, dates=dates, uids=uids) if len(v) >= 4}


def _assert_no_bytes(values: set[str], path: Path) -> None:
    data = path.read_bytes()
    found = sorted(v for v in values if v.encode() in data)
    assert not found, f"{len(found)} planted values survive in {path.name}"


def test_basic_profile_removes_every_planted_value(
    corpus_files: list[Path], tmp_path: Path
) -> None:
    results = _run(corpus_files, Profile(), tmp_path)
    for original, out, path in results:
        _assert_no_bytes(_planted(original), path)
        assert out.PatientIdentityRemoved == "YES"
        assert out.LongitudinalTemporalInformationModified == "REMOVED"
        assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]
        assert out.DeidentificationMethod
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        assert out.SOPInstanceUID.startswith("2.25.")
        assert not [e for e in out if e.tag.is_private]
        assert out.preamble == b"\0" * 128
        assert out.PixelData == original.PixelData
        assert out.PatientID == out.PatientName and out.PatientID.startswith("WB")
    report = scan_leaks(corpus_files, [p for _, _, p in results])
    assert report.clean, str(report)


def _same(keyword: str) -> Check:
    def check(original: Dataset, out: Dataset) -> None:
        assert out.get(keyword) == original.get(keyword) and original.get(keyword)

    return check


def _gone(keyword: str) -> Check:
    def check(original: Dataset, out: Dataset) -> None:
        assert original.get(keyword) and out.get(keyword) in (None, "", "ANONYMIZED")

    return check


@pytest.mark.parametrize(
    ("option", "checks", "ignore"),
    [
        (Option.RETAIN_LONG_FULL_DATES, [_same("StudyDate"), _same("SeriesTime")], {"date"}),
        (Option.RETAIN_PATIENT_CHARACTERISTICS, [_same("PatientSex"), _same("PatientAge")], set()),
        (
            Option.RETAIN_DEVICE_IDENTITY,
            [_same("DeviceSerialNumber"), _same("StationName")],
            {"device"},
        ),
        (
            Option.RETAIN_INSTITUTION_IDENTITY,
            [_same("InstitutionName")],
            {"institution", "address"},
        ),
        (Option.RETAIN_UIDS, [_same("SOPInstanceUID"), _same("StudyInstanceUID")], {"uid"}),
        (Option.CLEAN_DESCRIPTORS, [_same("StudyDescription"), _same("SeriesDescription")], set()),
        (Option.RETAIN_SAFE_PRIVATE, [_gone("InstitutionName")], set()),
        (Option.BASIC, [_gone("InstitutionName"), _gone("StudyDescription")], set()),
    ],
    ids=lambda v: v.name if isinstance(v, Option) else "",
)
def test_each_option_on_the_synthetic_corpus(
    option: Option, checks: list[Check], ignore: set[str], corpus_files: list[Path], tmp_path: Path
) -> None:
    results = _run(corpus_files, Profile(option), tmp_path)
    for original, out, _ in results:
        for check in checks:
            check(original, out)
        assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == [
            o.code for o in (Option.BASIC | option).members()
        ]
        assert not any(e.tag.group == 0x0009 for e in out)  # the synthetic block is not safe
    report = scan_leaks(corpus_files, [p for _, _, p in results], ignore=ignore)
    assert report.clean, str(report)


def test_modified_dates_shift_each_patient_consistently(
    corpus_files: list[Path], tmp_path: Path
) -> None:
    profile = Profile(Option.RETAIN_LONG_MODIFIED_DATES, date_shift_days=300)
    shifts: dict[str, set[int]] = {}
    for original, out, _ in _run(corpus_files, profile, tmp_path):
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
        days = (_date(out.StudyDate) - _date(original.StudyDate)).days
        assert days == date_shift(SECRET, original.PatientID, 300) != 0
        assert (_date(out.ContentDate) - _date(original.ContentDate)).days == days
        assert out.StudyTime == original.StudyTime  # whole-day shifts keep the time of day
        shifts.setdefault(original.PatientID, set()).add(days)
    assert all(len(s) == 1 for s in shifts.values())
    assert len({next(iter(s)) for s in shifts.values()}) > 1


def _date(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def test_adit_preset(corpus_files: list[Path], tmp_path: Path) -> None:
    profile = Profile.adit("SUBJ01", trial_id="T1", trial_name="Trial one")
    for original, out, _ in _run(corpus_files[:2], profile, tmp_path):
        assert out.PatientID == out.PatientName == "SUBJ01"
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime"):
            assert out.get(keyword) == original.get(keyword)
        assert out.ClinicalTrialProtocolID == "T1"
        assert out.ClinicalTrialProtocolName == "Trial one"
        expected = (
            f"Project:T1 Subject:SUBJ01 Session:SUBJ01_{original.StudyDate}-{original.StudyTime}"
        )
        assert out.PatientComments == expected
        assert out.PatientSex == original.PatientSex
        assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_clean_descriptors_scrub_identifying_words(corpus_files: list[Path]) -> None:
    ds = pydicom.dcmread(corpus_files[0])
    family = str(ds.PatientName).split("^")[0]
    ds.StudyDescription = f"CT of {family} for {ds.PatientID}"
    Pseudonymizer(SECRET, Profile(Option.CLEAN_DESCRIPTORS))(ds)
    assert family.lower() not in ds.StudyDescription.lower()
    assert ds.StudyDescription.startswith("CT of ")


def test_safe_private_keeps_only_allow_listed_elements(corpus_files: list[Path]) -> None:
    ds = pydicom.dcmread(corpus_files[0])
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")  # B_value: on the allow-list
    block.add_new(0x99, "LO", "SMITH^JOHN")  # not on it
    Pseudonymizer(SECRET, Profile(Option.RETAIN_SAFE_PRIVATE))(ds)
    private = {int(e.tag): e.value for e in ds if e.tag.is_private}
    assert private == {0x00190010: "SIEMENS MR HEADER", 0x0019100C: "1000"}
    assert PRIVATE_CREATOR not in private.values()


def test_references_inside_sequences_are_mapped_consistently(corpus_files: list[Path]) -> None:
    first, second = (pydicom.dcmread(p) for p in corpus_files[:2])
    ref = Dataset()
    ref.ReferencedSOPClassUID = first.SOPClassUID
    ref.ReferencedSOPInstanceUID = first.SOPInstanceUID
    deeper = Dataset()
    deeper.SourceImageSequence = Sequence([copy.deepcopy(ref)])
    second.ReferencedImageSequence = Sequence([ref])
    second.DerivationCodeSequence = Sequence([deeper])
    p = Pseudonymizer(SECRET, Profile())
    p(first)
    p(second)
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    nested = second.DerivationCodeSequence[0].SourceImageSequence[0]
    assert nested.ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPClassUID == first.SOPClassUID


def test_rt_references_survive(bundled: Callable[[str], Dataset]) -> None:
    struct, dose = bundled("rtstruct.dcm"), bundled("rtdose.dcm")
    ref_for = struct.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    p = Pseudonymizer(SECRET, Profile())
    p(struct)
    assert struct.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == p.uid(ref_for)
    rois = struct.StructureSetROISequence
    assert all(r.ReferencedFrameOfReferenceUID == p.uid(ref_for) for r in rois)
    original_for = dose.FrameOfReferenceUID
    p(dose)
    assert dose.FrameOfReferenceUID == p.uid(original_for)


BUNDLED = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "test-SR.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "rtdose.dcm",
    "SC_rgb_rle_2frame.dcm",
    "JPEG2000.dcm",
    "JPEG-lossy.dcm",
    "MR_small_jp2klossless.dcm",
    "examples_overlay.dcm",
    "UN_sequence.dcm",
    "MR_small_bigendian.dcm",
]


OPTION_SETS = [
    (Option.BASIC, set()),
    (
        Option.RETAIN_LONG_MODIFIED_DATES
        | Option.RETAIN_PATIENT_CHARACTERISTICS
        | Option.CLEAN_DESCRIPTORS
        | Option.CLEAN_STRUCTURED_CONTENT,
        set(),
    ),
    (
        Option.RETAIN_DEVICE_IDENTITY
        | Option.RETAIN_INSTITUTION_IDENTITY
        | Option.RETAIN_SAFE_PRIVATE,
        {"device", "institution", "address"},
    ),
    (Option.RETAIN_LONG_FULL_DATES | Option.RETAIN_UIDS, {"date", "uid"}),
]


@pytest.mark.parametrize(
    ("options", "ignore"), OPTION_SETS, ids=["basic", "modified", "device", "uids"]
)
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_files(name: str, options: Option, ignore: set[str], tmp_path: Path) -> None:
    src = bundled_path(name)
    original = pydicom.dcmread(src, force=True)
    out_path = tmp_path / "out.dcm"
    p = Pseudonymizer(SECRET, Profile(options, burned_in_policy="allow"))
    pseudonymize_file(p, src, out_path)
    out = pydicom.dcmread(out_path)
    if "PixelData" in original:
        assert out.PixelData == original.PixelData  # compressed fragments byte for byte
    for elem in out.iterall():
        remapped = elem.VR == "UI" and elem.value and Option.RETAIN_UIDS not in options
        if remapped and not elem.keyword.endswith(("ClassUID", "SyntaxUID", "CodingSchemeUID")):
            for uid in elem.value if elem.VM > 1 else [elem.value]:
                assert uid.startswith("2.25.") or uid in UID_dictionary, elem.keyword
        assert not 0x6000 <= elem.tag.group <= 0x60FF  # overlays removed (no Clean Graphics)
    assert not [e for e in out if e.tag.is_private and e.tag.element >= 0x1000]
    assert out.PatientIdentityRemoved == "YES"
    assert len(out.DeidentificationMethodCodeSequence) == len((options | Option.BASIC).members())
    if "SOPInstanceUID" in original:
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.get("SOPClassUID") == original.get("SOPClassUID")
    report = scan_leaks([src], [out_path], ignore=ignore)
    assert report.clean, str(report)


def test_curves_are_removed(bundled: Callable[[str], Dataset]) -> None:
    ds = bundled("CT_small.dcm")
    ds.add_new(0x50000010, "US", 2)
    ds.add_new(0x50003000, "OB", b"\1\2")
    Pseudonymizer(SECRET, Profile())(ds)
    assert not any(0x5000 <= e.tag.group <= 0x501E for e in ds)


def test_structured_content(bundled: Callable[[str], Dataset]) -> None:
    basic = bundled("test-SR.dcm")
    Pseudonymizer(SECRET, Profile())(basic)
    assert "ContentSequence" not in basic
    cleaned = bundled("test-SR.dcm")
    Pseudonymizer(SECRET, Profile(Option.CLEAN_STRUCTURED_CONTENT))(cleaned)
    assert len(cleaned.ContentSequence) > 0
    names = [e.value for e in cleaned.iterall() if e.VR == "PN" and e.value]
    assert all(str(n) in ("ANONYMOUS",) or str(n).startswith("WB") for n in names)


def test_explain_masks_before_and_shows_after(corpus_files: list[Path]) -> None:
    ds = pydicom.dcmread(corpus_files[0])
    name = str(ds.PatientName)
    before = copy.deepcopy(ds)
    rows = explain(ds, Pseudonymizer(SECRET, Profile()))
    assert ds == before  # explain works on a copy
    by_key = {(r.path, r.keyword): r for r in rows}
    assert by_key[("", "InstitutionName")].action == "dummy"
    assert by_key[("", "PatientName")].action == "write"
    assert by_key[("", "SOPInstanceUID")].after.startswith("2.25.")
    assert any(
        r.path.startswith("ProcedureCodeSequence[0].") for r in rows
    )  # nested attributes listed
    text = str(rows)
    assert name not in text and str(ds.PatientID) not in text
    assert rows.to_records()[0].keys() >= {"tag", "action", "before", "after"}
    frame = Pseudonymizer(SECRET, Profile()).explain(ds).to_dataframe()
    assert len(frame) == len(rows) and list(frame.columns)[:3] == ["path", "tag", "keyword"]
