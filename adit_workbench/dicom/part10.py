"""A Part-10 file's bytes, scanned: tag, VR and length of each element, nothing decoded.

Reading a 0.5 MB instance with pydicom costs a quarter of a millisecond even when only
its header is wanted; scanning its top-level elements costs a fraction of that and keeps
the bytes as they are. The receiver routes arriving instances with it, the transfer's
workers read an instance's facts with it, and the pseudonymization engine
(:mod:`adit_workbench.deid.encoded`) builds on it. Values are decoded one at a time,
exactly as pydicom decodes them. What the scanner does not handle (no preamble, big
endian, deflate, unsorted elements) raises :class:`Unsupported`: read those with
pydicom.

What no reader should accept raises :class:`Malformed` instead, naming the tag: an
element or item that runs past the end of the data (a cut file: pydicom would read the
short value silently), an undefined length where the VR allows none, sequences nested
deeper than :data:`MAX_DEPTH` (pydicom would end in a RecursionError). Sequences are
walked, not skipped, so that their items are held to the same rules.
:func:`read_regular` and :func:`read_checked` are the way into a file from a folder:
regular files only (a FIFO named ``*.dcm`` would block), scanned before anything reads
them, and checked the same way when pydicom has to read them.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.filereader import read_dataset
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, STANDARD_VR

from . import pixel_size

__all__ = [
    "MAX_DEPTH",
    "Buffer",
    "Element",
    "Malformed",
    "Part10",
    "Unsupported",
    "check_bytes",
    "check_elements",
    "dictionary_vr",
    "element_end",
    "element_text",
    "header",
    "read_checked",
    "read_regular",
    "scan",
    "tag_of",
    "value_text",
]

_UNDEFINED = 0xFFFFFFFF
_LONG = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
#: The standard VRs by their two bytes read as one little-endian number.
_VR_NAMES = {int.from_bytes(str(vr).encode(), "little"): str(vr) for vr in STANDARD_VR}
_ITEM, _ITEM_END, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
_HH = struct.Struct("<HH")
_I = struct.Struct("<I")
_H = struct.Struct("<H")
_IMPLICIT = "1.2.840.10008.1.2"
#: Big endian and the deflated syntaxes: left to pydicom.
_DECLINED_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"}
)
_CHARSET = 0x00080005
_PIXEL_DATA = 0x7FE00010
#: Bound of the memo of decoded values (entries are recomputable).
_MAX_TEXTS = 50_000


#: Deepest sequence nesting accepted (real objects stay below 10; pydicom recurses
#: about 4 frames per level, so a few hundred levels exhaust Python's stack).
MAX_DEPTH = 32
#: VRs whose value may have an undefined length (PS3.5 7.1.2–7.1.3).
_UNDEFINED_OK = frozenset({"SQ", "UN", "OB", "OW", ""})


class Unsupported(ValueError):
    """Bytes the scanner does not handle: take the pydicom path."""


class Malformed(ValueError):
    """Bytes no reader should accept (cut, impossible lengths, nesting too deep).

    Not an :class:`Unsupported`: the pydicom path must not be tried, it would read the
    damage as data. The message names the tag (never a value).
    """


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


# -- scanning ------------------------------------------------------------------------------
Buffer = bytes | memoryview
#: One element: (tag, VR or "" when implicit, start of header, start of value, end).
Element = tuple[int, str, int, int, int]


def header(buf: Buffer, pos: int, end: int, implicit: bool) -> tuple[int, str, int, int]:
    """``(tag, vr, value start, length)`` of the element at ``pos``."""
    if pos + 8 > end:
        raise Malformed(f"an element header at byte {pos} is cut off by the end of the data")
    group, elem = _HH.unpack_from(buf, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, "", pos + 8, _I.unpack_from(buf, pos + 4)[0]
    vr = _VR_NAMES.get(_H.unpack_from(buf, pos + 4)[0])
    if vr is None:
        raise Unsupported("not a standard explicit VR")
    if vr in _LONG:
        if pos + 12 > end:
            raise Malformed(f"element {_tag_text(tag)} is cut off by the end of the data")
        return tag, vr, pos + 12, _I.unpack_from(buf, pos + 8)[0]
    return tag, vr, pos + 8, _H.unpack_from(buf, pos + 6)[0]


def _skip_items(
    buf: Buffer, pos: int, end: int, implicit: bool, tag: int, depth: int, fragments: bool
) -> int:
    """Past the items of an undefined-length sequence (or encapsulated pixel data:
    ``fragments``), whose datasets lie at nesting ``depth``."""
    if depth > MAX_DEPTH:
        raise Malformed(f"sequence {_tag_text(tag)} is nested deeper than {MAX_DEPTH} levels")
    while True:
        if pos + 8 > end:
            raise Malformed(f"sequence {_tag_text(tag)} runs past the end of the data")
        key = _HH.unpack_from(buf, pos)
        length = _I.unpack_from(buf, pos + 4)[0]
        pos += 8
        if key == _SEQ_END:
            return pos
        if key != _ITEM:
            raise Malformed(f"{_tag_text(tag)} holds something that is not an item")
        if length == _UNDEFINED:
            pos = _skip_dataset(buf, pos, end, implicit, tag, depth)
        else:
            if pos + length > end:
                raise Malformed(f"an item of {_tag_text(tag)} runs past the end of the data")
            if not fragments:
                _walk(buf, pos, pos + length, implicit, depth)
            pos += length


def _skip_dataset(buf: Buffer, pos: int, end: int, implicit: bool, tag: int, depth: int) -> int:
    """Past the elements of an undefined-length item, its delimiter included."""
    while True:
        if pos + 8 <= end and _HH.unpack_from(buf, pos) == _ITEM_END:
            return pos + 8
        if pos >= end:
            raise Malformed(f"an item of {_tag_text(tag)} runs past the end of the data")
        pos = element_end(buf, pos, end, implicit, depth)[1]


def _walk(buf: Buffer, pos: int, end: int, implicit: bool, depth: int) -> None:
    """Check the elements of a defined-length item (held to the same rules)."""
    while pos < end:
        pos = element_end(buf, pos, end, implicit, depth)[1]


def _items(buf: Buffer, pos: int, end: int, implicit: bool, tag: int, depth: int) -> None:
    """Check the items of a defined-length sequence, whose datasets lie at ``depth``."""
    if depth > MAX_DEPTH:
        raise Malformed(f"sequence {_tag_text(tag)} is nested deeper than {MAX_DEPTH} levels")
    while pos < end:
        if pos + 8 > end:
            raise Malformed(f"an item of {_tag_text(tag)} runs past the end of its sequence")
        key = _HH.unpack_from(buf, pos)
        length = _I.unpack_from(buf, pos + 4)[0]
        pos += 8
        if key != _ITEM:
            raise Malformed(f"{_tag_text(tag)} holds something that is not an item")
        if length == _UNDEFINED:
            pos = _skip_dataset(buf, pos, end, implicit, tag, depth)
        else:
            if pos + length > end:
                raise Malformed(f"an item of {_tag_text(tag)} runs past the end of its sequence")
            _walk(buf, pos, pos + length, implicit, depth)
            pos += length


def element_end(
    buf: Buffer, pos: int, end: int, implicit: bool, depth: int = 0
) -> tuple[Element, int]:
    """The element at ``pos`` (in a dataset nested ``depth`` sequences deep) and its end."""
    tag, vr, start, length = header(buf, pos, end, implicit)
    if length == _UNDEFINED:
        kind = vr or (dictionary_vr(tag) if tag >> 16 & 1 == 0 else "UN")
        if kind not in _UNDEFINED_OK and tag != _PIXEL_DATA:
            raise Malformed(f"element {_tag_text(tag)} ({kind}) has an undefined length")
        # An undefined-length UN holds implicit VR items (PS3.5 6.2.2).
        fragments = tag == _PIXEL_DATA or vr in ("OB", "OW")
        stop = _skip_items(buf, start, end, implicit or vr == "UN", tag, depth + 1, fragments)
    else:
        stop = start + length
        if stop > end:
            raise Malformed(
                f"element {_tag_text(tag)} declares {length} bytes, "
                f"only {max(0, end - start)} are left"
            )
        if vr == "SQ" or (implicit and length and _is_sequence(tag)):
            _items(buf, start, stop, implicit or vr == "UN", tag, depth + 1)
    return (tag, vr, pos, start, stop), stop


def _is_sequence(tag: int) -> bool:
    return tag >> 16 & 1 == 0 and tag >> 16 != 0xFFFE and dictionary_vr(tag) == "SQ"


def scan(buf: Buffer, pos: int, end: int, implicit: bool) -> list[Element]:
    found: list[Element] = []
    last = -1
    while pos < end:
        element, pos = element_end(buf, pos, end, implicit)
        if element[0] <= last:
            raise Unsupported("elements out of order")
        last = element[0]
        found.append(element)
    return found


def dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


@dataclass
class Part10:
    """A Part-10 file's bytes, scanned: the file meta and the top-level elements."""

    data: bytes | memoryview
    implicit: bool
    meta: list[Element]
    elements: list[Element]
    by_tag: dict[int, Element] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Part10:
        """Scan ``data``; raise :class:`Unsupported` for what the fast path leaves to pydicom."""
        buf = memoryview(data)
        if len(buf) < 144 or buf[128:132] != b"DICM":
            raise Unsupported("no Part-10 preamble")
        meta: list[Element] = []
        pos, end = 132, len(buf)
        while pos + 4 <= end and _H.unpack_from(buf, pos)[0] == 2:
            element, pos = element_end(buf, pos, end, False)
            meta.append(element)
        syntax = ""
        for tag, _vr, _start, value, stop in meta:
            if tag == 0x00020010:
                syntax = bytes(buf[value:stop]).decode("ascii", "replace").rstrip("\0 ")
        if not syntax or syntax in _DECLINED_SYNTAXES:
            raise Unsupported("transfer syntax left to pydicom")
        implicit = syntax == _IMPLICIT
        elements = scan(buf, pos, end, implicit)
        scanned = cls(data, implicit, meta, elements, {e[0]: e for e in elements})
        scanned._check_pixels(syntax)
        return scanned

    def _check_pixels(self, syntax: str) -> None:
        """:class:`Malformed` if the Pixel Data is not the size the image attributes say
        (native syntaxes) or not a proper item sequence (encapsulated ones)."""
        element = self.by_tag.get(_PIXEL_DATA)
        if element is None:
            return
        _tag, _vr, pos, start, stop = element
        buf = memoryview(self.data)
        length = header(buf, pos, stop, self.implicit)[3]
        problem = pixel_size.pixel_problem(
            syntax,
            length,
            self._image_attributes,
            lambda: pixel_size.fragments_problem(buf[start:stop], delimited=True),
        )
        if problem:
            raise Malformed(problem)

    def _image_attributes(self) -> pixel_size.ImageAttributes:
        def number(spec: tuple[str, int], text: bool = False) -> int | str | None:
            element = self.by_tag.get(spec[1])
            if element is None:
                return None
            value = bytes(self.data[element[3] : element[4]])
            if text:  # NumberOfFrames (IS)
                digits = value.decode("ascii", "replace").strip(" \0")
                return 1 if not digits else int(digits) if digits.isdigit() else "not a number"
            return _H.unpack_from(value)[0] if len(value) >= 2 else "empty"

        return (
            number(pixel_size.ROWS),
            number(pixel_size.COLUMNS),
            number(pixel_size.SAMPLES),
            number(pixel_size.BITS),
            number(pixel_size.FRAMES, text=True),
            value_text(self.raw(pixel_size.PHOTOMETRIC), self.implicit, b"").upper(),
        )

    def raw(self, tag: int) -> bytes:
        """The encoded element (header and value), or b"" when absent."""
        element = self.by_tag.get(tag)
        return bytes(self.data[element[2] : element[4]]) if element else b""

    def text(self, keyword: str) -> str:
        """An attribute's value as ``str(value).strip()`` ("" when absent), as pydicom reads it."""
        return value_text(self.raw(tag_of(keyword)), self.implicit, self.raw(_CHARSET))


def tag_of(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"no DICOM keyword {keyword!r}")
    return int(tag)


def value_text(encoded: Buffer, implicit: bool, charset: bytes) -> str:
    if not encoded:
        return ""
    tag, vr, start, _length = header(encoded, 0, len(encoded), implicit)
    return element_text(tag, vr, encoded[start:], implicit, charset)


_TEXTS: dict[tuple[int, bytes, bytes], str] = {}


def element_text(tag: int, vr: str, value: Any, implicit: bool, charset: bytes) -> str:
    """``str(value).strip()`` of one encoded value, decoded exactly as pydicom does."""
    value = bytes(value)
    vr = vr or dictionary_vr(tag)
    if vr == "UI" and b"\\" not in value:
        return value.decode("ascii", "replace").rstrip(" \0").strip()
    key = (tag, value, charset)
    text = _TEXTS.get(key)
    if text is None:
        encoding: Any = default_encoding
        if charset:
            head = read_dataset(BytesIO(charset), implicit, True)
            encoding = head._character_set
        raw = RawDataElement(tag, vr, len(value), value, 0, implicit, True)  # type: ignore[arg-type]
        decoded = convert_raw_data_element(raw, encoding=encoding).value
        text = "" if decoded is None else str(decoded).strip()
        if len(_TEXTS) > _MAX_TEXTS:
            _TEXTS.clear()
        _TEXTS[key] = text
    return text


# -- files from folders -------------------------------------------------------------------
#: Largest file read from a folder (a DICOM instance of several GB is not ours to hold).
MAX_FILE_BYTES = 4 << 30


def read_regular(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file; :class:`Malformed` otherwise.

    Opened non-blocking and checked on the open handle, so that a FIFO, a device or a
    socket named ``*.dcm`` is refused at once, never waited on (nor swapped in after a
    check by name).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Malformed("not a regular file")
        if info.st_size > max_bytes:
            raise Malformed(f"{info.st_size} bytes: larger than {max_bytes}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(max_bytes + 1)
    finally:
        os.close(fd)


def check_bytes(data: bytes | memoryview) -> Part10 | None:
    """Scan ``data``: the scan, or None when pydicom must read it (:class:`Unsupported`).

    Raises :class:`Malformed` for what no reader should accept.
    """
    try:
        return Part10.parse(data)
    except Unsupported:
        return None


def read_checked(
    path: str | os.PathLike[str], *, stop_before_pixels: bool = False, force: bool = False
) -> Any:
    """A folder's file as a pydicom Dataset, only if it is whole and sane.

    Regular files only; scanned first (:class:`Malformed` for a cut file, an
    impossible length, nesting too deep); a file the scanner leaves to pydicom is read
    by it and its top-level elements are checked against their declared lengths.
    Raises :class:`Malformed` with the file's name and the reason, or pydicom's
    ``InvalidDicomError`` for a file that is not DICOM at all.
    """
    from pydicom import dcmread

    name = Path(path).name
    try:
        data = read_regular(path)
        scanned = check_bytes(data)
    except Malformed as exc:
        raise Malformed(f"{name}: {exc}") from None
    # What the scanner left to pydicom is read whole: a cut in the pixel data would
    # otherwise pass unseen behind stop_before_pixels (such files are rare).
    header_only = stop_before_pixels and scanned is not None
    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=header_only, force=force)
    except RecursionError:
        raise Malformed(f"{name}: sequences nested too deep") from None
    except (EOFError, struct.error, OverflowError, MemoryError) as exc:
        raise Malformed(f"{name}: unreadable ({type(exc).__name__})") from None
    try:
        check_elements(ds)
    except Malformed as exc:
        raise Malformed(f"{name}: {exc}") from None
    return ds


def check_elements(ds: Any) -> None:
    """Raise :class:`Malformed` if a top-level element pydicom read is shorter than its
    declared length (pydicom keeps the short value of a cut file without a word)."""
    from pydicom.dataelem import RawDataElement

    for element in ds.elements():
        if (
            isinstance(element, RawDataElement)
            and element.length != _UNDEFINED
            and element.value is not None
            and len(element.value) < element.length
        ):
            raise Malformed(f"element {_tag_text(int(element.tag))} is cut short")
    _check_decoded_pixels(ds)


def _check_decoded_pixels(ds: Any) -> None:
    """:func:`Part10._check_pixels` for a dataset pydicom read (big endian, deflated …)."""
    element = ds.get_item(_PIXEL_DATA) if _PIXEL_DATA in ds else None
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    if element is None or element.value is None or not syntax:
        return  # read without its pixels, or of unknown syntax: nothing to hold it to
    value = element.value
    if isinstance(element, RawDataElement):
        undefined = element.length == _UNDEFINED
    else:
        undefined = bool(getattr(element, "is_undefined_length", False))

    def attributes() -> pixel_size.ImageAttributes:
        found: list[int | str | None] = []
        for name, _tag in (
            pixel_size.ROWS,
            pixel_size.COLUMNS,
            pixel_size.SAMPLES,
            pixel_size.BITS,
            pixel_size.FRAMES,
        ):
            try:
                raw = ds.get(name)
                found.append(None if raw is None or raw == "" else int(raw))
            except (TypeError, ValueError, OverflowError):
                found.append("not a number")
        photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
        return (found[0], found[1], found[2], found[3], found[4], photometric)

    problem = pixel_size.pixel_problem(
        syntax,
        _UNDEFINED if undefined else len(value),
        attributes,
        lambda: pixel_size.fragments_problem(value, delimited=False),
    )
    if problem:
        raise Malformed(problem)
