"""Write a pseudonymized dataset by splicing untouched elements from the source bytes.

Most of a DICOM file survives pseudonymization unchanged: pixel data, geometry,
acquisition parameters. pydicom's writer re-emits every element one by one, which costs
more than the pseudonymization itself. Here the source file is read once into memory; an
element the walk never touched is still a raw element whose bytes sit at a known offset,
so runs of adjacent untouched elements are copied as one slice, and only changed, added or
undefined-length elements go through pydicom's element writer.

The output is byte for byte what ``ds.save_as(dst)`` would write (the tests hold it to
that); anything unusual (deflated transfer syntax, a changed character set, a dataset
not read from bytes) simply falls back to ``save_as``.
"""

from __future__ import annotations

import io
import os
from typing import Literal

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from ..dicom.part10 import Malformed, check_elements, read_regular

__all__ = ["element_span", "read_source", "write_spliced"]

_UNDEFINED = 0xFFFFFFFF


def read_source(path: str | os.PathLike[str]) -> tuple[Dataset, bytes]:
    """Read a DICOM file into memory and parse it from there: ``(dataset, file bytes)``.

    Files without the Part-10 preamble are accepted when they parse as an instance (SOP
    Class and Instance UIDs present); anything else raises InvalidDicomError.
    """
    data = read_regular(path)  # never a FIFO; Malformed for what no reader should take
    try:
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
                raise InvalidDicomError("not a DICOM instance") from None
    except RecursionError:
        raise Malformed("sequences nested too deep") from None
    check_elements(ds)
    return ds, data


def element_span(elem: DataElement | RawDataElement, implicit: bool, little: bool, data: bytes) -> (
    tuple[int, int] | None
):  # fmt: skip
    """Byte range of an untouched raw element in ``data``, or None to re-encode it."""
    if not isinstance(elem, RawDataElement) or elem.length == _UNDEFINED:
        return None
    value = elem.value
    if value is None or len(value) != elem.length:
        return None
    header = 8 if implicit or elem.VR not in EXPLICIT_VR_LENGTH_32 else 12
    start = elem.value_tell - header
    if start < 0:
        return None
    order: Literal["little", "big"] = "little" if little else "big"
    group = int.from_bytes(data[start : start + 2], order)
    element = int.from_bytes(data[start + 2 : start + 4], order)
    if (group << 16 | element) != elem.tag:
        return None  # offsets are not what we think: let pydicom encode it
    return start, elem.value_tell + elem.length


def write_spliced(ds: Dataset, data: bytes, dst: str | os.PathLike[str]) -> None:
    """Write ``ds`` (read by :func:`read_source` from ``data``) to ``dst``."""
    implicit, little = ds.original_encoding
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if (
        implicit is None
        or little is None
        or (implicit and not little)
        or syntax == DeflatedExplicitVRLittleEndian
        or ds.original_character_set != ds._character_set
    ):
        ds.save_as(dst)
        return
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    view = memoryview(data)
    with open(dst, "wb") as raw:
        fp = DicomFileLike(raw)
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
        preamble = getattr(ds, "preamble", None)
        if preamble:
            fp.write(preamble)
            fp.write(b"DICM")
        if meta:
            write_file_meta_info(fp, meta, enforce_standard=False)
        run_start = run_end = -1
        for tag in sorted(ds.keys()):
            if tag.element == 0 and tag.group > 6:
                continue  # retired group lengths, as pydicom's writer does
            elem = ds.get_item(tag)
            span = element_span(elem, implicit, little, data)
            if span is not None:
                if span[0] == run_end:
                    run_end = span[1]
                    continue
                if run_end > run_start:
                    fp.write(view[run_start:run_end])
                run_start, run_end = span
                continue
            if run_end > run_start:
                fp.write(view[run_start:run_end])
                run_start = run_end = -1
            write_data_element(fp, ds[tag], encodings)
        if run_end > run_start:
            fp.write(view[run_start:run_end])
