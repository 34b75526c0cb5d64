"""A crafted corpus of hostile files, generated at run time (nothing is downloaded).

Each case is a name, the bytes of a file (or a special kind: a FIFO, a directory named
``*.dcm``) and what a reader must do with it: ``ok`` (sound), ``refused`` (damaged:
reported and counted, never written) or ``skipped`` (not DICOM at all). The sound
instances carry hostile UIDs and text (traversal, absolute paths, Windows device names,
terminal escapes) that must never become a path outside a root or reach a terminal raw.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.1.1"
ESC = "\x1b[2J\x1b]0;pwned\x07"

#: SOP Instance UIDs a crafted sender may use: each must land below its root, distinct.
HOSTILE_UIDS = [
    "../a",
    "_a",
    "/tmp/abs",
    "../../../../../../tmp/escape",
    "CON",
    "NUL.dcm",
    "com1",
    "a\\b",
    ".hidden",
    "..",
    "x" * 200,
    "1.2.3\x00",
    "1.2.3..4",
    "ab" + ESC,
]


def dataset(
    sop: str = "1.2.826.0.1.3680043.8.498.1.1.1",
    *,
    study: str = STUDY,
    series: str = SERIES,
    patient_id: str = "PID-1",
    description: str = "Head",
    modality: str = "CT",
    pixels: int = 64,
) -> Dataset:
    """A small sound CT instance (PHI-like values included)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = patient_id
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    ds.StudyDate = "20200102"
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.StudyDescription = description
    ds.SeriesDescription = description
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(pixels)
    return ds


def encode(ds: Dataset, *, implicit: bool = False, big: bool = False) -> bytes:
    """Part-10 bytes of ``ds`` (pydicom's validation warnings silenced: crafted on purpose)."""
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    if big:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _element(tag: int, vr: str, value: bytes, *, length: int | None = None) -> bytes:
    """One explicit VR little endian element (``length`` overrides the true length)."""
    n = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in ("OB", "OW", "SQ", "UN", "UT", "UC", "UR"):
        return head + b"\0\0" + struct.pack("<I", n) + value
    return head + struct.pack("<H", n & 0xFFFF) + value


_serial = iter(range(100, 10_000))


def _with_element(extra: bytes) -> bytes:
    """A sound instance (a UID of its own) with ``extra`` (encoded elements) inserted in
    tag order before the pixel data (their tags lie between (0028,xxxx) and (7FE0,0010))."""
    data = encode(dataset(f"1.2.826.0.1.3680043.8.498.1.1.{next(_serial)}"))
    at = data.rfind(b"\xe0\x7f\x10\x00OB")
    if at < 0:
        at = data.rfind(b"\xe0\x7f\x10\x00OW")
    return data[:at] + extra + data[at:]


def nested(depth: int, *, defined: bool) -> bytes:
    """A sequence (0040,A730 ContentSequence) nested ``depth`` levels deep."""
    if defined:
        inner = b""
        for _ in range(depth):
            item = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)) + inner
            inner = _element(0x0040A730, "SQ", item)
        return _with_element(inner)
    opening = (
        _element(0x0040A730, "SQ", b"", length=0xFFFFFFFF) + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    )
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return _with_element(opening * depth + closing * depth)


def _cut_in_item() -> bytes:
    """Nested sequences cut inside an item."""
    data = nested(3, defined=True)
    return data[: data.find(b"\x40\x00\x30\xa7SQ") + 30]


def _cut_in(data: bytes, marker: bytes, into: int) -> bytes:
    """``data`` cut ``into`` bytes into the value of the element starting with ``marker``."""
    at = data.find(marker)
    assert at >= 0
    return data[: at + 8 + into]


@dataclass(frozen=True)
class Case:
    """One crafted input: its name, bytes (or special kind) and the expected outcome."""

    name: str
    data: bytes
    expect: str  # "ok" | "refused" | "skipped"
    kind: str = "file"  # "file" | "fifo" | "dir"
    #: A word the refusal reason must contain (a tag, or "regular").
    reason: str = ""
    #: The scanner leaves it to pydicom (big endian): refused after pydicom read it.
    pydicom_path: bool = False


def cases() -> list[Case]:
    """Every crafted file (at least 30; the tests add the calls)."""
    with warnings.catch_warnings():  # pydicom warns about every crafted value
        warnings.simplefilter("ignore")
        return _cases()


def _cases() -> list[Case]:
    good = encode(dataset())
    study_tag = b"\x20\x00\x0d\x00UI"
    implicit = encode(dataset("1.2.826.0.1.3680043.8.498.1.1.2"), implicit=True)
    pid_at = implicit.find(b"\x10\x00\x20\x00", 132)
    out = [
        Case("sound.dcm", good, "ok"),
        Case("cut_study_uid.dcm", _cut_in(good, study_tag, 5), "refused", reason="(0020,000D)"),
        Case("cut_in_pixels.dcm", good[:-20], "refused", reason="(7FE0,0010)"),
        Case("cut_in_header.dcm", good[: -(len(good) - good.find(study_tag) - 3)], "refused"),
        Case("cut_in_meta.dcm", good[:150], "refused"),
        Case(
            "undefined_patient_id.dcm",
            implicit[: pid_at + 4] + b"\xff\xff\xff\xff" + implicit[pid_at + 8 :],
            "refused",
            reason="(0010,0020)",
        ),
        Case(
            "huge_length.dcm",
            _with_element(_element(0x00491001, "UT", b"abc", length=0x7FFFFFF0)),
            "refused",
            reason="(0049,1001)",
        ),
        Case(
            "undefined_ut.dcm",
            _with_element(_element(0x00491001, "UT", b"abc", length=0xFFFFFFFF)),
            "refused",
            reason="(0049,1001)",
        ),
        Case("deep_undefined.dcm", nested(2000, defined=False), "refused", reason="nested"),
        Case("deep_defined.dcm", nested(2000, defined=True), "refused", reason="nested"),
        Case("nested_ok.dcm", nested(5, defined=True), "ok"),
        Case("cut_in_item.dcm", _cut_in_item(), "refused", reason="(0040,A730)"),
        Case(
            "big_endian_cut.dcm",
            encode(dataset("1.2.826.0.1.3680043.8.498.1.1.7"), big=True)[:-20],
            "refused",
            reason="(7FE0,0010)",
            pydicom_path=True,
        ),
        Case(
            "big_endian.dcm",
            encode(dataset("1.2.826.0.1.3680043.8.498.1.1.8"), big=True),
            "ok",
            pydicom_path=True,
        ),
        Case(
            "sq_not_items.dcm",
            _with_element(_element(0x0040A730, "SQ", b"\x10\x00\x10\x00PN\x02\x00AB")),
            "refused",
            reason="(0040,A730)",
        ),
        Case("fifo.dcm", b"", "refused", kind="fifo", reason="regular"),
        Case("folder.dcm", b"", "skipped", kind="dir"),
        Case("empty.dcm", b"", "skipped"),
        Case("text.dcm", b"not dicom at all\n" * 20, "skipped"),
        Case(
            "escape_description.dcm",
            encode(dataset("1.2.826.0.1.3680043.8.498.1.1.9", description="CT" + ESC)),
            "ok",
        ),
    ]
    for n, uid in enumerate(HOSTILE_UIDS):
        ds = dataset(uid, study=uid if n % 3 == 0 else STUDY, patient_id=uid)
        out.append(Case(f"hostile_{n:02d}.dcm", encode(ds), "ok"))
    out.append(Case("hostile_implicit.dcm", encode(dataset("../imp"), implicit=True), "ok"))
    return out + _pixel_cases()


def _pixels(n: int, *, pixels: int = 64, **attrs: object) -> Dataset:
    """A sound instance (UID ending in ``n``) with ``pixels`` bytes and ``attrs`` set."""
    ds = dataset(f"1.2.826.0.1.3680043.8.498.1.2.{n}", pixels=pixels)
    for keyword, value in attrs.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def _encapsulated(n: int, fragments: bytes | None = None) -> bytes:
    """A JPEG baseline instance whose Pixel Data items are ``fragments`` (raw item bytes:
    offset table, fragments, delimiter), or one proper fragment."""
    ds = _pixels(n)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(60) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = encode(ds)
    if fragments is None:
        return data
    at = data.rfind(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff") + 12
    return data[:at] + fragments


_ITEM = b"\xfe\xff\x00\xe0"
_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _item(value: bytes) -> bytes:
    return _ITEM + struct.pack("<I", len(value)) + value


def _native_undefined() -> bytes:
    """Explicit VR little endian whose Pixel Data has an undefined length (items)."""
    data = encode(_pixels(20))
    at = data.rfind(b"\xe0\x7f\x10\x00OB")
    head = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
    return data[:at] + head + _item(b"") + _item(bytes(64)) + _DELIMITER


def _pixel_cases() -> list[Case]:
    """Pixel Data whose size the image attributes contradict, and encapsulated pixel
    data whose items are broken; beside them the sound cases that look alike."""
    pixel = "(7FE0,0010)"
    return [
        Case("pixels_short.dcm", encode(_pixels(1, pixels=60)), "refused", reason=pixel),
        # Longer than the attributes say: padding, the pixels are all there (let through).
        Case("pixels_long.dcm", encode(_pixels(2, pixels=80)), "ok"),
        Case("pixels_empty.dcm", encode(_pixels(3, pixels=0)), "refused", reason=pixel),
        Case("pixels_frames.dcm", encode(_pixels(4, NumberOfFrames=2)), "refused", reason=pixel),
        Case(
            "pixels_16bit.dcm",
            encode(_pixels(5, BitsAllocated=16, BitsStored=16, HighBit=15)),
            "refused",
            reason=pixel,
        ),
        Case("pixels_rgb.dcm", encode(_pixels(6, SamplesPerPixel=3)), "refused", reason=pixel),
        Case(
            "pixels_implicit_short.dcm",
            encode(_pixels(7, pixels=62), implicit=True),
            "refused",
            reason=pixel,
        ),
        Case(
            "pixels_big_endian_short.dcm",
            encode(_pixels(8, pixels=62), big=True),
            "refused",
            reason=pixel,
            pydicom_path=True,
        ),
        Case(
            "pixels_bad_frames.dcm",
            encode(_pixels(9, NumberOfFrames=1)).replace(b"IS\x02\x001 ", b"IS\x02\x001A"),
            "refused",
            reason="(0028,0008)",
        ),
        Case("pixels_no_rows.dcm", encode(_pixels(10, Rows=None)), "refused", reason="(0028,0010)"),
        Case(
            "pixels_12bit.dcm",
            encode(_pixels(11, BitsAllocated=12, BitsStored=12, HighBit=11)),
            "refused",
            reason="(0028,0100)",
        ),
        Case("pixels_native_undefined.dcm", _native_undefined(), "refused", reason=pixel),
        Case(
            "encapsulated_no_fragment.dcm",
            _encapsulated(12, _item(b"") + _DELIMITER),
            "refused",
            reason=pixel,
        ),
        Case(
            "encapsulated_odd_offsets.dcm",
            _encapsulated(13, _item(b"abc") + _item(bytes(8)) + _DELIMITER),
            "refused",
            reason=pixel,
        ),
        Case(
            "encapsulated_not_items.dcm",
            _encapsulated(14, _item(b"") + b"\x10\x00\x10\x00" + bytes(4) + _DELIMITER),
            "refused",
            reason=pixel,
        ),
        Case(
            "encapsulated_defined.dcm",
            _encapsulated(15, _item(b"") + _item(bytes(8)) + _DELIMITER).replace(
                b"OB\x00\x00\xff\xff\xff\xff", b"OB\x00\x00" + struct.pack("<I", 24)
            ),
            "refused",
            reason=pixel,
        ),
        Case("pixels_odd_padded.dcm", encode(_pixels(16, pixels=9, Rows=3, Columns=3)), "ok"),
        Case("pixels_1bit.dcm", encode(_pixels(17, pixels=8, BitsAllocated=1)), "ok"),
        Case("pixels_frames_ok.dcm", encode(_pixels(18, pixels=128, NumberOfFrames=2)), "ok"),
        Case("encapsulated.dcm", _encapsulated(19), "ok"),
    ]


def write(folder: Path, selected: list[Case] | None = None) -> list[Case]:
    """Write the cases into ``folder`` (one per file); returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = cases() if selected is None else selected
    for case in chosen:
        path = folder / case.name
        if case.kind == "fifo":
            os.mkfifo(path)
        elif case.kind == "dir":
            path.mkdir()
        else:
            path.write_bytes(case.data)
    return chosen


def files_below(root: Path) -> Iterator[Path]:
    """Every file (any kind) below ``root``."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            yield Path(dirpath, name)
