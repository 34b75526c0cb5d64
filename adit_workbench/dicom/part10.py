"""A Part-10 file's bytes, scanned: tag, VR and length of each element, nothing decoded.

Reading a 0.5 MB instance with pydicom costs a quarter of a millisecond even when only
its header is wanted; scanning its top-level elements costs a fraction of that and keeps
the bytes as they are. The receiver routes arriving instances with it, the transfer's
workers read an instance's facts with it, and the pseudonymization engine
(:mod:`adit_workbench.deid.encoded`) builds on it. Values are decoded one at a time,
exactly as pydicom decodes them. What the scanner does not handle (no preamble, big
endian, deflate, unsorted or malformed elements) raises :class:`Unsupported`: read
those with pydicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.filereader import read_dataset
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, STANDARD_VR

__all__ = [
    "Buffer",
    "Element",
    "Part10",
    "Unsupported",
    "dictionary_vr",
    "element_end",
    "element_text",
    "header",
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
#: Bound of the memo of decoded values (entries are recomputable).
_MAX_TEXTS = 50_000


class Unsupported(ValueError):
    """Bytes the scanner does not handle: take the pydicom path."""


# -- scanning ------------------------------------------------------------------------------
Buffer = bytes | memoryview
#: One element: (tag, VR or "" when implicit, start of header, start of value, end).
Element = tuple[int, str, int, int, int]


def header(buf: Buffer, pos: int, end: int, implicit: bool) -> tuple[int, str, int, int]:
    """``(tag, vr, value start, length)`` of the element at ``pos``."""
    if pos + 8 > end:
        raise Unsupported("truncated element")
    group, elem = _HH.unpack_from(buf, pos)
    tag = group << 16 | elem
    if implicit or group == 0xFFFE:
        return tag, "", pos + 8, _I.unpack_from(buf, pos + 4)[0]
    vr = _VR_NAMES.get(_H.unpack_from(buf, pos + 4)[0])
    if vr is None:
        raise Unsupported("not a standard explicit VR")
    if vr in _LONG:
        if pos + 12 > end:
            raise Unsupported("truncated element")
        return tag, vr, pos + 12, _I.unpack_from(buf, pos + 8)[0]
    return tag, vr, pos + 8, _H.unpack_from(buf, pos + 6)[0]


def _skip_items(buf: Buffer, pos: int, end: int, implicit: bool) -> int:
    """Past the items of an undefined-length sequence (or encapsulated pixel data)."""
    while True:
        if pos + 8 > end:
            raise Unsupported("unterminated sequence")
        key = _HH.unpack_from(buf, pos)
        length = _I.unpack_from(buf, pos + 4)[0]
        pos += 8
        if key == _SEQ_END:
            return pos
        if key != _ITEM:
            raise Unsupported("not an item")
        if length == _UNDEFINED:
            pos = _skip_dataset(buf, pos, end, implicit)
        else:
            pos += length
            if pos > end:
                raise Unsupported("item beyond the end")


def _skip_dataset(buf: Buffer, pos: int, end: int, implicit: bool) -> int:
    """Past the elements of an undefined-length item, its delimiter included."""
    while True:
        if pos + 8 <= end and _HH.unpack_from(buf, pos) == _ITEM_END:
            return pos + 8
        pos = element_end(buf, pos, end, implicit)[1]


def element_end(buf: Buffer, pos: int, end: int, implicit: bool) -> tuple[Element, int]:
    tag, vr, start, length = header(buf, pos, end, implicit)
    if length == _UNDEFINED:
        # An undefined-length UN holds implicit VR items (PS3.5 6.2.2).
        stop = _skip_items(buf, start, end, implicit or vr == "UN")
    else:
        stop = start + length
        if stop > end:
            raise Unsupported("element beyond the end")
    return (tag, vr, pos, start, stop), stop


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
        return cls(data, implicit, meta, elements, {e[0]: e for e in elements})

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
