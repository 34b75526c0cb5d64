"""The encoded-bytes engine writes exactly what the pydicom path writes, or declines."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset

from adit_workbench.config import BurnedInPolicy as Policy
from adit_workbench.deid import BurnedInRefused, Option, Profile, Pseudonymizer
from adit_workbench.deid.encoded import EncodedPseudonymizer, Part10, Unsupported, engine_for
from adit_workbench.deid.splice import read_source, write_spliced
from adit_workbench.deid.table import SafePrivate
from adit_workbench.dicom.part10 import Malformed
from adit_workbench.sandbox.synthetic import iter_datasets

from .conftest import SECRET

PROFILES = {
    "basic": Profile(burned_in_policy=Policy.ALLOW),
    "retain-uids-dates": Profile(
        Option.RETAIN_UIDS | Option.RETAIN_LONG_FULL_DATES, burned_in_policy=Policy.ALLOW
    ),
    "modified-dates-descriptors": Profile(
        Option.RETAIN_LONG_MODIFIED_DATES | Option.CLEAN_DESCRIPTORS,
        burned_in_policy=Policy.ALLOW,
    ),
    "adit-trial": Profile.adit("SUBJ-01", trial_id="T1", trial_name="Trial"),
    "refuse-burned-in": Profile(burned_in_policy=Policy.REFUSE),
}
#: pydicom's bundled files the scanner leaves to pydicom, and why.
UNSUPPORTED = {
    "ExplVR_BigEnd.dcm": "big endian",
    "MR_small_bigendian.dcm": "big endian",
    "MR_small_expb.dcm": "big endian",
    "SC_rgb_small_odd_big_endian.dcm": "big endian",
    "liver_expb_1frame.dcm": "big endian",
    "rtdose_expb.dcm": "big endian",
    "rtdose_expb_1frame.dcm": "big endian",
    "image_dfl.dcm": "deflated",
    "meta_missing_tsyntax.dcm": "no transfer syntax",
    "ExplVR_BigEndNoMeta.dcm": "no preamble",
    "ExplVR_LitEndNoMeta.dcm": "no preamble",
    "no_meta.dcm": "no preamble",
    "rtstruct.dcm": "no preamble",
    "SC_rgb_jpeg.dcm": "a VR that is not one",
}
#: pydicom's bundled files that are cut short: refused by the scanner, naming the tag.
MALFORMED = {
    "MR_truncated.dcm": "(7FE0,0010)",
    "rtplan_truncated.dcm": "(300A,00B0)",
    "badVR.dcm": "(0028,0008)",  # NumberOfFrames "1A"
    "nested_priv_SQ.dcm": "(0028,0010)",  # Pixel Data without Rows
}
#: Bundled files without a SOP Instance UID: the engine declines them.
DECLINED = {
    "UN_sequence.dcm",
    "empty_charset_LEI.dcm",
    "no_meta_group_length.dcm",
    "priv_SQ.dcm",
}
#: pydicom's bundled test files (get_testdata_files would try to download more).
BUNDLED = sorted(Path(pydicom.data.__file__).with_name("test_files").glob("*.dcm"))


def _pydicom_path(p: Pseudonymizer, data: bytes, tmp: Path) -> bytes | None:
    """What the pydicom path writes for ``data`` (None: refused for burned-in text)."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    try:
        p(ds)
    except BurnedInRefused:
        return None
    write_spliced(ds, data, tmp)
    return tmp.read_bytes()


def _engine_path(engine: EncodedPseudonymizer, data: bytes, tmp: Path) -> bytes | None:
    try:
        out = engine(Part10.parse(data))
    except BurnedInRefused:
        return None
    assert out is not None
    written = out.write(tmp)
    assert written == tmp.stat().st_size
    return tmp.read_bytes()


@pytest.mark.parametrize("profile", PROFILES)
def test_bundled_files_byte_for_byte(profile: str, tmp_path: Path) -> None:
    p = Pseudonymizer(SECRET, PROFILES[profile])
    engine = EncodedPseudonymizer(p)
    compared = 0
    for path in BUNDLED * 2:  # the second pass answers from the memos
        data = path.read_bytes()
        if path.name in UNSUPPORTED:
            with pytest.raises(Unsupported):
                Part10.parse(data)
            continue
        if path.name in MALFORMED:
            with pytest.raises(Malformed, match=re.escape(MALFORMED[path.name])):
                Part10.parse(data)
            continue
        src = Part10.parse(data)
        if path.name in DECLINED:
            assert engine(src) is None
            continue
        try:
            expected = _pydicom_path(p, data, tmp_path / "a.dcm")
        except Exception:  # pydicom cannot pseudonymize it either (broken test files)
            continue
        assert _engine_path(engine, data, tmp_path / "b.dcm") == expected, path.name
        compared += 1
    assert compared >= 90


def test_series_share_one_context_and_match(tmp_path: Path) -> None:
    """A PHI-rich series (private block, sequences, dates, free text): every instance."""
    p = Pseudonymizer(SECRET, PROFILES["adit-trial"])
    engine = EncodedPseudonymizer(p)
    datasets = iter_datasets(patients=2, series=2, instances=5, modality="mixed", seed=3)
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        assert _engine_path(engine, data, tmp_path / "b.dcm") == _pydicom_path(
            p, data, tmp_path / "a.dcm"
        )
    assert len(engine._contexts) == 2  # one per patient: its series share the context


def _with_private(creator: str, implicit: bool = False) -> bytes:
    ds = next(iter_datasets(patients=1, series=1, instances=1, seed=5))
    block = ds.private_block(0x0019, creator, create=True)
    block.add_new(0x0A, "US", 12)
    block.add_new(0x0B, "DS", "1.5")
    other = ds.private_block(0x0029, "ACME SECRETS", create=True)
    other.add_new(0x01, "LO", "Patient Doe, 1970")
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=implicit)
    return buffer.getvalue()


@pytest.mark.parametrize("implicit", [False, True])
def test_safe_private_blocks_kept_others_dropped(implicit: bool, tmp_path: Path) -> None:
    safe = (SafePrivate("SIEMENS MR HEADER", 0x0019, 0x0A, "NumberOfImagesInMosaic"),)
    p = Pseudonymizer(SECRET, Profile(Option.RETAIN_SAFE_PRIVATE, safe_private=safe))
    data = _with_private("SIEMENS MR HEADER", implicit)
    got = _engine_path(EncodedPseudonymizer(p), data, tmp_path / "b.dcm")
    assert got == _pydicom_path(p, data, tmp_path / "a.dcm")
    out = pydicom.dcmread(tmp_path / "b.dcm")
    assert out[0x0019, 0x0010].value == "SIEMENS MR HEADER"
    assert out[0x0019, 0x100A].value == 12
    assert (0x0019, 0x100B) not in out and (0x0029, 0x0010) not in out


def _latin1() -> bytes:
    ds = next(iter_datasets(patients=1, series=1, instances=1, seed=9))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.StudyDescription = "Thorax Müller follow-up"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_other_character_sets(tmp_path: Path) -> None:
    p = Pseudonymizer(SECRET, PROFILES["modified-dates-descriptors"])
    data = _latin1()
    assert _engine_path(EncodedPseudonymizer(p), data, tmp_path / "b.dcm") == _pydicom_path(
        p, data, tmp_path / "a.dcm"
    )
    assert "Müller" not in str(pydicom.dcmread(tmp_path / "b.dcm").get("StudyDescription", ""))


def _ultrasound(flag: str | None) -> bytes:
    ds = next(iter_datasets(patients=1, series=1, instances=1, seed=2))
    ds.Modality = "US"
    if flag is None:
        ds.pop("BurnedInAnnotation", None)
    else:
        ds.BurnedInAnnotation = flag
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_burned_in_refused_and_warned_every_time(caplog: pytest.LogCaptureFixture) -> None:
    data = _ultrasound(None)
    refusing = EncodedPseudonymizer(Pseudonymizer(SECRET, Profile(burned_in_policy=Policy.REFUSE)))
    for _ in range(2):
        with pytest.raises(BurnedInRefused):
            refusing(Part10.parse(data))
    assert refusing(Part10.parse(_ultrasound("NO"))) is not None
    warning = EncodedPseudonymizer(Pseudonymizer(SECRET, Profile(burned_in_policy=Policy.WARN)))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert warning(Part10.parse(data)) is not None
    assert sum("burned-in" in r.getMessage() for r in caplog.records) == 3


KEYWORDS = (
    "SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID",
    "Modality", "SeriesNumber", "SeriesDescription", "StudyDate", "StudyTime",
)  # fmt: skip


def _as_text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"])
def test_text_values_as_pydicom_reads_them(name: str, tmp_path: Path) -> None:
    path = next(p for p in BUNDLED if p.name == name)
    data = path.read_bytes()
    src = Part10.parse(data)
    ds, _ = read_source(path)
    assert [src.text(k) for k in KEYWORDS] == [_as_text(ds, k) for k in KEYWORDS]
    p = Pseudonymizer(SECRET, PROFILES["adit-trial"])
    out = engine_for(p)(src)
    assert out is not None
    out.write(tmp_path / "out.dcm")
    written = pydicom.dcmread(tmp_path / "out.dcm")
    assert [out.text(k) for k in KEYWORDS] == [_as_text(written, k) for k in KEYWORDS]
    assert written.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID
    assert engine_for(p) is engine_for(p)


def _pixel_length(data: bytes, length: bytes) -> bytes:
    at = data.rfind(b"\xe0\x7f\x10\x00OW") + 8  # CT_small: explicit VR, OW
    return data[:at] + length + data[at + 4 :]


def test_no_marker_is_left_to_pydicom() -> None:
    data = next(p for p in BUNDLED if p.name == "CT_small.dcm").read_bytes()
    with pytest.raises(Unsupported):
        Part10.parse(data[:128] + b"XXXX" + data[132:])


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:-10],  # cut short
        lambda d: _pixel_length(d, b"\xff\xff\xff\x7f"),  # a length past the end
        lambda d: _pixel_length(d, b"\xff\xff\xff\xff"),  # undefined, no items
    ],
)
def test_damaged_bytes_are_refused_naming_the_tag(damage: object) -> None:
    """Damage is not left to pydicom: it would read the short value as data."""
    data = next(p for p in BUNDLED if p.name == "CT_small.dcm").read_bytes()
    with pytest.raises(Malformed, match=r"\([0-9A-F]{4},[0-9A-F]{4}\)"):
        Part10.parse(damage(data))  # type: ignore[operator]


def test_more_elements_than_one_writev_takes(tmp_path: Path) -> None:
    """1,500 kept private elements: the output is written in several writev() calls."""
    ds = next(iter_datasets(patients=1, series=1, instances=1, seed=6))
    for number in range(6):
        block = ds.private_block(0x0019, f"ACME {number}", create=True)
        for offset in range(250):
            block.add_new(offset, "US", offset)
    safe = tuple(
        SafePrivate(f"ACME {n}", 0x0019, offset, f"Value{n}x{offset}")
        for n in range(6)
        for offset in range(250)
    )
    p = Pseudonymizer(SECRET, Profile(Option.RETAIN_SAFE_PRIVATE, safe_private=safe))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    out = EncodedPseudonymizer(p)(Part10.parse(data))
    assert out is not None and len(out.parts) > 1500
    assert _engine_path(EncodedPseudonymizer(p), data, tmp_path / "b.dcm") == _pydicom_path(
        p, data, tmp_path / "a.dcm"
    )
