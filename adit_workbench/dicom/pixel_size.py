"""Does the Pixel Data hold what the image attributes say it holds?

A file whose Pixel Data is shorter or longer than Rows × Columns × SamplesPerPixel ×
BitsAllocated/8 × NumberOfFrames reads without a word in pydicom and breaks whoever
decodes it later (a viewer, a converter, a volume in a notebook), far from the file
that caused it. So the Part-10 scanner (:mod:`.part10`) refuses it, naming the field.

Native (uncompressed) transfer syntaxes: the value must hold at least what the
attributes say. Shorter is refused (frames cut off); longer is let through, as dcmtk and
pydicom read it: the pixels are all there, and senders do pad (pydicom's own
``MR_small_padded.dcm``). Encapsulated (compressed) ones: the value must be a
sequence of items: a Basic Offset Table (a multiple of 4 bytes) and at least one
fragment, each within the data. The functions return the problem as text, or None: the
caller raises its own error (:class:`~.part10.Malformed`), with the file's name.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = [
    "NATIVE_SYNTAXES",
    "ImageAttributes",
    "expected_length",
    "fragments_problem",
    "pixel_problem",
]

#: Implicit and explicit VR little endian, explicit big endian, deflated: pixels as is.
NATIVE_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.8.1",
    }
)
_UNDEFINED = 0xFFFFFFFF
_PIXEL = "Pixel Data (7FE0,0010)"
_ITEM = struct.Struct("<HHI")

#: The attributes the size follows from, with their tags (named in messages).
ROWS, COLUMNS, SAMPLES, BITS, FRAMES = (
    ("Rows", 0x00280010),
    ("Columns", 0x00280011),
    ("SamplesPerPixel", 0x00280002),
    ("BitsAllocated", 0x00280100),
    ("NumberOfFrames", 0x00280008),
)


def _field(spec: tuple[str, int]) -> str:
    name, tag = spec
    return f"{name} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


PHOTOMETRIC = 0x00280004
#: Rows, Columns, SamplesPerPixel, BitsAllocated, NumberOfFrames as read (None: absent;
#: a str: present but not a number), then PhotometricInterpretation ("" when absent).
ImageAttributes = tuple[
    int | str | None, int | str | None, int | str | None, int | str | None, int | str | None, str
]


def expected_length(
    rows: int, columns: int, samples: int, bits: int, frames: int, photometric: str = ""
) -> int:
    """Bytes of native pixel data (before the padding to an even length).

    YBR_FULL_422 keeps one Cb and one Cr for two pixels: two samples' worth a pixel
    (PS3.3 C.7.6.3.1.2), though SamplesPerPixel says 3.
    """
    if photometric == "YBR_FULL_422" and samples == 3:
        samples = 2
    count = rows * columns * samples * frames
    return (count + 7) // 8 if bits == 1 else count * (bits // 8)


def pixel_problem(
    syntax: str,
    length: int,
    attributes: Callable[[], ImageAttributes],
    fragments: Callable[[], str | None],
) -> str | None:
    """What is wrong with a Pixel Data element of ``length`` bytes (``0xFFFFFFFF``:
    undefined) in ``syntax``, or None. ``attributes`` and ``fragments`` are called only
    when needed (the image attributes for native data, the item walk for encapsulated)."""
    if syntax not in NATIVE_SYNTAXES:
        if length != _UNDEFINED:
            return f"{_PIXEL} is not encapsulated (defined length) in compressed syntax {syntax}"
        return fragments()
    if length == _UNDEFINED:
        return f"{_PIXEL} has an undefined length in an uncompressed transfer syntax"
    *numbers, photometric = attributes()
    values: list[int] = []
    for spec, value, default in zip(
        (ROWS, COLUMNS, SAMPLES, BITS, FRAMES), numbers, (None, None, 1, None, 1), strict=True
    ):
        if value is None:
            if default is None:
                return f"{_PIXEL} without {_field(spec)}"
            value = default
        if isinstance(value, str) or value < 0:
            return f"{_field(spec)} is not a usable number"
        values.append(value)
    rows, columns, samples, bits, frames = values
    if bits != 1 and (bits == 0 or bits % 8):
        return f"{_field(BITS)} is {bits}: uncompressed pixels need 1 or a multiple of 8"
    expected = expected_length(rows, columns, samples, bits, frames, photometric)
    if length >= expected:
        return None
    return (
        f"{_PIXEL} holds {length} bytes, but Rows × Columns × SamplesPerPixel × "
        f"BitsAllocated/8 × NumberOfFrames = {rows} × {columns} × {samples} × "
        f"{bits}/8 × {frames} = {expected}"
        + (" (YBR_FULL_422: 2 samples a pixel)" if photometric == "YBR_FULL_422" else "")
    )


def fragments_problem(value: bytes | memoryview, *, delimited: bool) -> str | None:
    """What is wrong with the items of encapsulated pixel data, or None.

    ``value`` starts at the first item; ``delimited``: it ends with the sequence
    delimiter (the scanner's view); pydicom's value stops before it.
    """
    pos, end, items = 0, len(value), 0
    while pos < end:
        if pos + 8 > end:
            return f"an item of {_PIXEL} is cut off"
        group, elem, length = _ITEM.unpack_from(value, pos)
        pos += 8
        if (group, elem) == (0xFFFE, 0xE0DD):
            break
        if (group, elem) != (0xFFFE, 0xE000):
            return f"{_PIXEL} holds something that is not an item"
        if length == _UNDEFINED or pos + length > end:
            return f"an item of {_PIXEL} runs past the end of the data"
        if items == 0 and length % 4:
            return f"the Basic Offset Table of {_PIXEL} is not a multiple of 4 bytes"
        items += 1
        pos += length
    else:
        if delimited:
            return f"{_PIXEL} has no sequence delimiter"
    if items < 2:
        return f"{_PIXEL} holds no fragment after its Basic Offset Table"
    return None
