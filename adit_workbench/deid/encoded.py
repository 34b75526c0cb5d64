"""Pseudonymize Part-10 bytes element by element, remembering what each element became.

The instances of a series share most of their header: the same patient, study, series,
protocol, device and descriptions, and the same private blocks. :class:`Pseudonymizer`
works on a pydicom ``Dataset`` and pays for decoding, walking and re-encoding all of it
in every instance; here the bytes are scanned instead (:mod:`~adit_workbench.dicom.part10`:
tag, VR, length, nothing decoded) and each element's output is looked up by its raw bytes:

* an element the profile keeps is copied as it lies (pixel data included);
* an element the profile removes is left out;
* any other element is pseudonymized once by the pydicom path on a one-element dataset
  (``Pseudonymizer._element``, the very code the full walk runs) and its encoded output
  remembered, so the next instance with the same bytes costs a dictionary lookup.

One element's output depends on nothing but the element and the instance's facts (date
shift, scrub pattern: see ``INSTANCE_KEYWORDS``); those attributes form the *context*,
pseudonymized together through the full walk and ``_finish`` once per distinct context,
and the memo of elements is kept per context. Private elements follow the safe-private
rules from their blocks' creators, as ``Pseudonymizer._privates`` does.

The output is byte for byte what ``Pseudonymizer`` followed by
:func:`~.splice.write_spliced` writes (the tests hold it to that). What the scanner does
not handle (no preamble, big endian, deflate, unsorted or malformed elements, a
character set the walk changes) makes :meth:`EncodedPseudonymizer.__call__` return
None, and the caller takes the pydicom path.
"""

from __future__ import annotations

import logging
import os
import struct
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom.charset import default_encoding
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import UID

from ..config import BurnedInPolicy
from ..dicom.part10 import (
    Buffer,
    Element,
    Part10,
    Unsupported,
    dictionary_vr,
    element_text,
    scan,
    tag_of,
    value_text,
)
from .pseudonymizer import (
    BURNED_IN_WARNING,
    INSTANCE_KEYWORDS,
    META_DROPPED,
    BurnedInRefused,
    Pseudonymizer,
)
from .splice import element_span
from .table import Action

__all__ = ["EncodedPseudonymizer", "Output", "Part10", "Unsupported", "element_text", "engine_for"]

log = logging.getLogger(__name__)

_HH = struct.Struct("<HH")
_I = struct.Struct("<I")
_H = struct.Struct("<H")
_PREAMBLE = b"\0" * 128 + b"DICM"
_SOP_UID = 0x00080018
_CHARSET = 0x00080005
_MEDIA_SOP_UID = 0x00020003
#: Buffers one writev() takes (Linux's IOV_MAX).
_IOV_MAX = 1024
#: Elements larger than this are pseudonymized each time rather than remembered.
_MEMO_LIMIT = 64 * 1024
#: Bounds of the memos (entries are recomputable; a full memo simply starts over).
_MAX_ELEMENTS = 50_000
_MAX_CONTEXTS = 256

_CONTEXT_TAGS = frozenset(int(t) for k in INSTANCE_KEYWORDS if (t := tag_for_keyword(k)))


@dataclass
class Output:
    """A pseudonymized instance: the buffers of its file, and its elements by tag."""

    parts: list[Buffer]
    elements: dict[int, Buffer]
    implicit: bool
    #: May carry burned-in text, pseudonymized under the "warn" policy.
    warned: bool = False

    def text(self, keyword: str) -> str:
        """An output attribute's value as ``str(value).strip()`` ("" when absent)."""
        return value_text(self.elements.get(tag_of(keyword), b""), self.implicit,
                     bytes(self.elements.get(_CHARSET, b"")))  # fmt: skip

    def write(self, path: str | os.PathLike[str]) -> int:
        """Write the file to ``path`` (a system call per 1,024 parts); the bytes written."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        size = 0
        try:
            for start in range(0, len(self.parts), _IOV_MAX):
                batch = self.parts[start : start + _IOV_MAX]
                done = os.writev(fd, batch)
                rest = memoryview(b"".join(batch))[done:] if done < sum(map(len, batch)) else b""
                while rest:  # a short write (rare): the rest from one buffer
                    rest = rest[os.write(fd, rest) :]
                size += sum(map(len, batch))
        finally:
            os.close(fd)
        return size


# -- pseudonymizing ------------------------------------------------------------------------
def _encode(ds: Any, tag: int, source: bytes, implicit: bool, encodings: Any) -> bytes:
    """One element of ``ds`` as write_spliced writes it: its source bytes if untouched."""
    elem = ds.get_item(tag)
    span = element_span(elem, implicit, True, source)
    if span is not None:
        return source[span[0] : span[1]]
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_data_element(fp, ds[tag], encodings)
    return fp.getvalue()


@dataclass
class _Context:
    """One distinct context: its outputs, and the memo of elements pseudonymized under it."""

    inst: Any = None  # the pseudonymizer's per-instance facts
    warn: bool = False  # burned-in risk under the "warn" policy
    refused: str = ""
    charset: bytes = b""
    encodings: Any = default_encoding
    outputs: dict[int, bytes] = field(default_factory=dict)
    memo: dict[tuple[int, bytes], bytes] = field(default_factory=dict)


class EncodedPseudonymizer:
    """``Pseudonymizer`` on Part-10 bytes, with memory (see the module docstring).

    ``engine(part10)`` returns the :class:`Output`, or None when the instance is one for
    the pydicom path. Raises :class:`BurnedInRefused` as the pseudonymizer does. Threads
    may share an engine: memo entries are recomputable, so the worst a race does is
    compute one twice. :func:`engine_for` keeps one per pseudonymizer and process.
    """

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self.pseudonymizer = pseudonymizer
        self._contexts: dict[tuple[bytes, ...], _Context] = {}
        self._metas: dict[bytes, tuple[bool, bytes, bytes]] = {}
        self._actions: dict[int, tuple[Action, str]] = {}
        self._safe = pseudonymizer.rules.safe_private

    def __call__(self, src: Part10) -> Output | None:
        ctx, new = self._context(src)
        if ctx is None:
            return None
        if ctx.refused:
            raise BurnedInRefused(ctx.refused)
        if ctx.warn and not new:  # a new context has warned already, in _begin
            log.warning(BURNED_IN_WARNING)
        data, implicit = src.data, src.implicit
        view = memoryview(data)
        out: dict[int, bytes | memoryview] = {}
        privates: list[Element] = []
        for element in src.elements:
            tag, vr, start, value, stop = element
            if tag in _CONTEXT_TAGS:
                continue
            group = tag >> 16
            if group & 1:
                privates.append(element)
                continue
            action, known_vr = self._action(tag)
            if action is Action.REMOVE or group == 0 or tag & 0xFFFF == 0:
                continue
            vr = vr or known_vr
            if action is Action.KEEP and vr not in ("SQ", "UN") and tag != _SOP_UID:
                out[tag] = view[start:stop]
                continue
            if action is Action.UID and vr == "UI":
                result = self._uid(tag, view[value:stop], implicit)
                if result is not None:  # an instance's own UID: not worth remembering
                    out[tag] = result
                    continue
            result = self._memoized(ctx, tag, bytes(view[start:stop]), implicit)
            if result:
                out[tag] = result
        if privates:
            self._privates(ctx, src, privates, out, view)
        out.update(ctx.outputs)
        if _SOP_UID not in out:
            return None  # _finish would derive the file meta's UID otherwise: pydicom's job
        meta = self._meta(src, value_text(out[_SOP_UID], implicit, b""))
        parts = [_PREAMBLE, meta, *(out[tag] for tag in sorted(out))]
        return Output(parts, out, implicit, ctx.warn)

    # -- per element -----------------------------------------------------------------------
    def _action(self, tag: int) -> tuple[Action, str]:
        found = self._actions.get(tag)
        if found is None:
            found = self._actions[tag] = (self.pseudonymizer.rule(tag).action, dictionary_vr(tag))
        return found

    def _uid(self, tag: int, value: memoryview, implicit: bool) -> bytes | None:
        """A single UID remapped and encoded as pydicom would; None for anything else."""
        raw = bytes(value)
        if not raw or b"\\" in raw or not raw.isascii():
            return None
        uid = self.pseudonymizer.uid(raw.decode("ascii").rstrip(" \0"))
        if not uid:
            return None
        encoded = uid.encode("ascii")
        if len(encoded) % 2:
            encoded += b"\0"
        group_element = _HH.pack(tag >> 16, tag & 0xFFFF)
        if implicit:
            return group_element + _I.pack(len(encoded)) + encoded
        return group_element + b"UI" + _H.pack(len(encoded)) + encoded

    def _memoized(self, ctx: _Context, tag: int, encoded: bytes, implicit: bool) -> bytes:
        key = (tag, encoded)
        result = ctx.memo.get(key)
        if result is None:
            result = self._one(ctx, tag, encoded, implicit)
            if len(encoded) <= _MEMO_LIMIT:
                if len(ctx.memo) > _MAX_ELEMENTS:
                    ctx.memo.clear()
                ctx.memo[key] = result
        return result

    def _one(self, ctx: _Context, tag: int, encoded: bytes, implicit: bool) -> bytes:
        """Pseudonymize one element through the pydicom path; its encoded output."""
        source = ctx.charset + encoded
        ds = read_dataset(BytesIO(source), implicit, True)
        if tag >> 16 & 1:
            ds[tag]
        else:
            self.pseudonymizer._element(ds, tag, ctx.inst, None, "")
            if tag == _SOP_UID and tag in ds:
                ds[tag]
        if tag not in ds:
            return b""
        return _encode(ds, tag, source, implicit, ctx.encodings)

    def _privates(
        self,
        ctx: _Context,
        src: Part10,
        privates: Sequence[Element],
        out: dict[int, Any],
        view: memoryview,
    ) -> None:
        """Keep the safe private elements and their creators (``Pseudonymizer._privates``)."""
        if not self._safe:
            return
        charset = src.raw(_CHARSET)
        creators: dict[tuple[int, int], str] = {}
        for tag, vr, _start, value, stop in privates:
            if 0x10 <= tag & 0xFFFF <= 0xFF:
                text = element_text(tag, vr or "LO", view[value:stop], src.implicit, charset)
                creators[(tag >> 16, tag & 0xFF)] = text
        kept: set[tuple[int, int]] = set()
        for tag, _vr, start, _value, stop in privates:
            group, number = tag >> 16, tag & 0xFFFF
            if 0x10 <= number <= 0xFF:
                continue
            block = (group, number >> 8)
            creator = creators.get(block)
            if creator is not None and (creator, group, number & 0xFF) in self._safe:
                kept.add(block)
                out[tag] = view[start:stop]
        for tag, _vr, start, _value, stop in privates:
            if 0x10 <= tag & 0xFFFF <= 0xFF and (tag >> 16, tag & 0xFF) in kept:
                out[tag] = self._memoized(ctx, tag, bytes(view[start:stop]), src.implicit)

    # -- per context -----------------------------------------------------------------------
    def _context(self, src: Part10) -> tuple[_Context | None, bool]:
        """The instance's context, and whether it is new."""
        data = src.data
        key = tuple(bytes(data[e[2] : e[4]]) for e in src.elements if e[0] in _CONTEXT_TAGS)
        ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx, False
        ctx = self._new_context(src, b"".join(key))
        if ctx is not None:
            if len(self._contexts) >= _MAX_CONTEXTS:
                self._contexts.clear()
            self._contexts[key] = ctx
        return ctx, True

    def _new_context(self, src: Part10, source: bytes) -> _Context | None:
        """Run the full walk and ``_finish`` on the context attributes alone."""
        p = self.pseudonymizer
        ds = read_dataset(BytesIO(source), src.implicit, True)
        try:
            inst, patient_id = p._begin(ds)
        except BurnedInRefused as exc:
            return _Context(refused=str(exc))
        warn = p.burned_in_risk(ds) and p.profile.burned_in_policy is BurnedInPolicy.WARN
        p._walk(ds, inst, None, "")
        p._finish(ds, patient_id, None)
        if ds.original_character_set != ds._character_set:
            return None  # write_spliced would re-encode everything: pydicom's job
        encodings = ds.get("SpecificCharacterSet", default_encoding)
        ctx = _Context(inst, warn, charset=src.raw(_CHARSET), encodings=encodings)
        for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset decodes its elements)
            ctx.outputs[int(tag)] = _encode(ds, tag, source, src.implicit, encodings)
        return ctx

    # -- file meta -------------------------------------------------------------------------
    def _meta(self, src: Part10, sop: str) -> bytes:
        """The output file meta: the input's, the new SOP Instance UID, some dropped."""
        data = src.data
        kept = b"".join(bytes(data[e[2] : e[4]]) for e in src.meta if e[0] != _MEDIA_SOP_UID)
        template = self._metas.get(kept)
        if template is None:
            source = b"".join(bytes(data[e[2] : e[4]]) for e in src.meta)
            meta = FileMetaDataset(read_dataset(BytesIO(source), False, True))
            meta.MediaStorageSOPInstanceUID = UID(sop)
            for tag in META_DROPPED:
                if tag in meta:
                    del meta[tag]
            fp = DicomBytesIO()
            fp.is_implicit_VR, fp.is_little_endian = False, True
            write_file_meta_info(fp, meta, enforce_standard=False)
            written = fp.getvalue()
            scanned = scan(written, 0, len(written), False)
            has_length = bool(scanned) and scanned[0][0] == 0x00020000
            before = b"".join(written[e[2] : e[4]] for e in scanned if 0 < e[0] & 0xFFFF < 3)
            after = b"".join(written[e[2] : e[4]] for e in scanned if e[0] & 0xFFFF > 3)
            if len(self._metas) >= _MAX_CONTEXTS:
                self._metas.clear()
            template = self._metas[kept] = (has_length, before, after)
        has_length, before, after = template
        value = sop.encode("ascii")
        if len(value) % 2:
            value += b"\0"
        body = b"".join((before, b"\x02\x00\x03\x00UI", _H.pack(len(value)), value, after))
        if not has_length:
            return body
        return b"\x02\x00\x00\x00UL\x04\x00" + _I.pack(len(body)) + body


_ENGINES: weakref.WeakKeyDictionary[Pseudonymizer, EncodedPseudonymizer] = (
    weakref.WeakKeyDictionary()
)


def engine_for(pseudonymizer: Pseudonymizer) -> EncodedPseudonymizer:
    """The engine of ``pseudonymizer`` in this process (its memos live as long as it does)."""
    engine = _ENGINES.get(pseudonymizer)
    if engine is None:
        engine = _ENGINES[pseudonymizer] = EncodedPseudonymizer(pseudonymizer)
    return engine
