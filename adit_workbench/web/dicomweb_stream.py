"""The byte streams behind the service's DICOMweb routes: fetch, pseudonymize, frame.

:func:`iter_instances` yields the Part-10 bytes of a study, series or instance from any
node, undecoded: WADO-RS, C-GET or C-MOVE to the receiver (chosen as a transfer chooses,
by :func:`~adit_workbench.transfer.fetch.choose_fetch`), or a folder; :func:`iter_study`
fetches a study's series side by side. One instance (a few, across streams) is in memory
at a time, and the consumer's pace is the server's (a C-GET is read off the socket as the
next part is asked for): a 2,000-instance study costs the service what a 20-instance one
does (bench/dicomweb: 155.9 vs 155.7 MB peak RSS, the answer sent through
:class:`~adit_workbench.web.dicomweb_response.ThreadedStream`). :func:`relay_wado` passes a DICOMweb
node's answer through unparsed when nothing is to be changed.

:func:`pseudonymize_bytes` runs the same engine as a transfer's workers (the encoded
pseudonymizer, pydicom plus splicing where it cannot scan), so a pseudonymized WADO answer
carries the very UIDs, pseudonym and dates a transfer job of the project would write.

:func:`multipart` frames parts for ``multipart/related``; :func:`spool_multipart` does the
reverse for STOW-RS request bodies, writing each part to a file as it arrives.
"""

from __future__ import annotations

import io
import os
import queue
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import Dataset, dcmread

from ..deid import BurnedInRefused, Pseudonymizer
from ..deid.encoded import engine_for
from ..deid.splice import write_spliced
from ..dicom.dimse import DimseNode, RetrieveResult
from ..dicom.folder import iter_headers, matches
from ..dicom.node import QueryLevel, open_node
from ..dicom.part10 import Part10, Unsupported, element_end
from ..dicom.receiver import shared_receiver
from ..dicom.retrieve import iter_cmove, iter_wado_encoded
from ..dicom.server import DicomServer
from ..dicom.spec import FolderSpec, ServerSpec
from ..errors import DicomStatusError, InputError, NodeUnreachable, NotSupported
from ..transfer.fetch import choose_fetch

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "SpooledPart",
    "StowBodyError",
    "StowTooLarge",
    "capped",
    "iter_instances",
    "iter_study",
    "multipart",
    "pseudonymize_bytes",
    "pseudonymized",
    "spool_multipart",
    "transfer_syntax_of",
]

#: Largest header block of one STOW part (a body part's MIME headers, not its data).
_MAX_PART_HEADERS = 16 * 1024
_VIA = ("auto", "wado", "cget", "cmove")


def _query(study: str, series: str | None, sop: str | None) -> tuple[QueryLevel, Dataset]:
    query = Dataset()
    query.StudyInstanceUID = study
    level = QueryLevel.STUDY
    if series:
        query.SeriesInstanceUID = series
        level = QueryLevel.SERIES
    if sop:
        query.SOPInstanceUID = sop
        level = QueryLevel.IMAGE
    return level, query


def fetch_method(spec: ServerSpec | FolderSpec, settings: Settings, via: str) -> str:
    """The method a retrieve from ``spec`` uses: folder, wado, cget or cmove."""
    if via not in _VIA:
        raise InputError(f"unknown via {via!r}: use auto, wado, cget or cmove")
    if isinstance(spec, FolderSpec):
        return "folder"
    node = open_node(spec, settings)
    try:
        return choose_fetch(node, None, via, None, frozenset(), allow_direct=False).method
    finally:
        node.close()


def iter_instances(
    spec: ServerSpec | FolderSpec,
    settings: Settings,
    study: str,
    series: str | None = None,
    sop: str | None = None,
    *,
    method: str = "auto",
    sop_classes: tuple[str, ...] | None = None,
) -> Generator[bytes, None, None]:
    """The Part-10 files of a study, series or instance of ``spec``'s node, one at a time.

    The caller has checked access: this opens a node of its own (closed when the stream
    ends or is closed), so a retrieve never holds the association a query is using.
    ``sop_classes``: the storage classes a C-GET proposes, when the caller knows them
    (else one C-FIND asks the node).
    """
    if method == "auto":
        method = fetch_method(spec, settings, "auto")
    level, query = _query(study, series, sop)
    if isinstance(spec, FolderSpec):
        if not spec.path.is_dir():
            raise NodeUnreachable(spec.name, "READ", "folder does not exist")
        for path, header in iter_headers(spec.path):
            if matches(header, query):
                yield path.read_bytes()
        return
    node = DicomServer(spec, settings)
    try:
        if method == "wado":
            if node.dicomweb is None:
                raise NotSupported(spec.name, "WADO-RS", "no DICOMweb root configured")
            yield from iter_wado_encoded(node.dicomweb, study, series, [sop] if sop else None)
            return
        dimse = node.dimse
        if dimse is None:
            raise NotSupported(spec.name, method.upper(), "no DIMSE address configured")
        if method == "cget":
            classes = dimse.sop_classes(query) if sop_classes is None else sop_classes
            # The C-FIND's association would sit idle in the pool for the whole C-GET,
            # its two pynetdicom threads polling at 1 kHz for the GIL the stream needs.
            dimse.pool.release_idle()
            yield from _cget(dimse, level, query, classes)
        else:
            with shared_receiver(settings) as spool:
                for path in iter_cmove(dimse, level, query, spool=spool):
                    try:
                        yield path.read_bytes()
                    finally:
                        path.unlink(missing_ok=True)
    finally:
        node.close()


def _cget(
    dimse: DimseNode, level: QueryLevel, query: Dataset, classes: tuple[str, ...]
) -> Generator[bytes, None, None]:
    """:func:`~adit_workbench.dicom.retrieve.iter_cget` (encoded) with known classes."""
    stream = dimse.get_stream(level, query, sop_classes=classes)
    try:
        while True:
            try:
                data = next(stream)
            except StopIteration as stop:
                result: RetrieveResult = stop.value
                break
            yield data
    finally:
        stream.close()  # early: a C-CANCEL at the server
    if result.failed:
        total = result.failed + result.completed
        raise DicomStatusError(dimse.name, "C-GET", result.status, result.category,
                               f"{result.failed} of {total} instances failed")  # fmt: skip


class _Failed:
    """An exception from a fetch thread, carried to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def series_of(
    spec: ServerSpec, settings: Settings, study: str, *, classes: bool = False
) -> tuple[list[str], tuple[str, ...] | None]:
    """The SeriesInstanceUIDs of a study (C-FIND or QIDO, as the node's capabilities say)
    and, with ``classes``, its SOP classes (what a C-GET proposes), on one association."""
    query = Dataset()
    query.StudyInstanceUID = study
    query.SeriesInstanceUID = None
    node = DicomServer(spec, settings)
    try:
        found = node.find(QueryLevel.SERIES, query)
        uids = sorted({str(ds.SeriesInstanceUID) for ds in found if ds.get("SeriesInstanceUID")})
        known = None
        if classes and node.dimse is not None:
            wanted = Dataset()
            wanted.StudyInstanceUID = study
            known = node.dimse.sop_classes(wanted)
        return uids, known
    finally:
        node.close()


def iter_study(
    spec: ServerSpec | FolderSpec, settings: Settings, study: str, *, method: str
) -> Generator[bytes, None, None]:
    """A whole study, its series fetched side by side (up to the node's
    ``max_associations``) when the method is C-GET or WADO-RS.

    A PACS sends a C-GET's instances one at a time, each waiting for our answer: a
    second stream fills that wait. The threads hand over through a queue of a few
    instances, so memory stays flat; closing the stream stops them (C-CANCEL).
    """
    streams = spec.max_associations if isinstance(spec, ServerSpec) else 1
    if method not in ("cget", "wado") or streams < 2 or isinstance(spec, FolderSpec):
        yield from iter_instances(spec, settings, study, method=method)
        return
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    series, classes = series_of(spec, settings, study, classes=method == "cget")
    for uid in series:
        todo.put(uid)
    out: queue.Queue[object] = queue.Queue(maxsize=2 * streams)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            while not stop.is_set():
                try:
                    uid = todo.get_nowait()
                except queue.Empty:
                    return
                stream = iter_instances(
                    spec, settings, study, uid, method=method, sop_classes=classes
                )
                try:
                    for data in stream:
                        if not put(data):
                            return
                finally:
                    stream.close()
        except BaseException as exc:  # re-raised in the consumer's thread
            put(_Failed(exc))
        finally:
            put(_END)

    threads = [
        threading.Thread(target=fetch, name=f"wb-dicomweb-{spec.name}", daemon=True)
        for _ in range(min(streams, len(series)))
    ]
    for thread in threads:
        thread.start()
    try:
        ended = 0
        while ended < len(threads):
            item = out.get()
            if item is _END:
                ended += 1
            elif isinstance(item, _Failed):
                raise item.error
            else:
                assert isinstance(item, bytes)
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(settings.dimse_timeout + settings.network_timeout)


_RELAY_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_RELAY_CHUNK = 1 << 20


@dataclass
class Relay:
    """An upstream WADO-RS answer passed through as it arrives (see :func:`relay_wado`)."""

    content_type: str
    chunks: Generator[bytes, None, None] | None = None
    #: Parts seen so far (counted on the delimiters, across chunk borders).
    parts: int = 0


def relay_wado(
    spec: ServerSpec, settings: Settings, study: str, series: str | None, sop: str | None
) -> Relay:
    """The upstream ``multipart/related`` answer of a DICOMweb node, unparsed.

    Nothing is to be changed in the instances, so the bytes need no framing of ours:
    parsing and re-framing each part cost about a quarter of the throughput. The
    upstream's errors (404, refused connection …) raise here, before any byte is sent.
    """
    node = DicomServer(spec, settings)
    web = node.dicomweb
    if web is None:
        node.close()
        raise NotSupported(spec.name, "WADO-RS", "no DICOMweb root configured")
    url = f"{web.service_url('wado')}/studies/{study}"
    if series:
        url += f"/series/{series}" + (f"/instances/{sop}" if sop else "")
    try:
        with web.wrap("WADO-RS"):
            response = web.session.get(url, headers={"Accept": _RELAY_ACCEPT}, stream=True)
            response.raise_for_status()
            content_type = response.headers.get("Content-Type", "")
            kind, params = media_params(content_type)
            if kind != "multipart/related" or not params.get("boundary"):
                raise ValueError("the answer is not multipart/related")
    except BaseException:
        node.close()
        raise
    delimiter = b"\r\n--" + params["boundary"].encode("latin-1")
    relay = Relay(content_type)

    def chunks() -> Generator[bytes, None, None]:
        keep = len(delimiter) - 1
        tail = b"\r\n"  # so that a delimiter at the very start counts too
        seen = 0
        try:
            with web.wrap("WADO-RS"):
                for chunk in response.iter_content(chunk_size=_RELAY_CHUNK):
                    # Delimiters across the border (they start in the tail), then inside.
                    seen += (tail + chunk[:keep]).count(delimiter) + chunk.count(delimiter)
                    tail = (tail + chunk)[-keep:] if len(chunk) < keep else chunk[-keep:]
                    yield chunk
            relay.parts = max(0, seen - 1)  # the closing delimiter is no part
        finally:
            response.close()
            node.close()

    relay.chunks = chunks()
    return relay


def pseudonymized(
    source: Iterator[bytes], pseudonymizer: Pseudonymizer, spool: Path
) -> Generator[bytes | None, None, None]:
    """``source`` pseudonymized one instance at a time; None for one the profile refuses.

    In the service's own process: a process pool beside the stream was tried (workers
    keep the pseudonymizer, instances travel by pipe) and was no faster on two shared
    cores, where the copies cost what the parallel engine saved, and its worker
    processes outlived a service that was stopped.
    """
    for data in source:
        try:
            yield pseudonymize_bytes(pseudonymizer, data, spool)
        except BurnedInRefused:
            yield None


def pseudonymize_bytes(pseudonymizer: Pseudonymizer, data: bytes, spool: Path) -> bytes:
    """One Part-10 file pseudonymized exactly as a transfer's worker does it.

    Raises :class:`~adit_workbench.deid.BurnedInRefused` when the profile refuses it.
    """
    try:
        facts: Part10 | None = Part10.parse(data)
    except Unsupported:
        facts = None
    if facts is not None:
        out = engine_for(pseudonymizer)(facts)
        if out is not None:
            return b"".join(out.parts)
    ds = dcmread(io.BytesIO(data), force=True)
    pseudonymizer(ds)
    # write_spliced writes to a path; a private temporary file, removed at once.
    handle, name = tempfile.mkstemp(dir=spool, suffix=".dcm")
    os.close(handle)
    try:
        write_spliced(ds, data, name)
        return Path(name).read_bytes()
    finally:
        Path(name).unlink(missing_ok=True)


def transfer_syntax_of(data: bytes) -> str | None:
    """The Transfer Syntax UID in a Part-10 file's meta (None without meta or when bad)."""
    buf = memoryview(data)
    if len(buf) < 144 or buf[128:132] != b"DICM":
        return None
    pos, end = 132, len(buf)
    try:
        while pos + 4 <= end and int.from_bytes(buf[pos : pos + 2], "little") == 2:
            (tag, _vr, _start, value, stop), pos = element_end(buf, pos, end, False)
            if tag == 0x00020010:
                return bytes(buf[value:stop]).decode("ascii", "replace").rstrip("\0 ")
    except ValueError:
        return None
    return None


def multipart(parts: Iterator[bytes], boundary: str) -> Iterator[bytes]:
    """``multipart/related`` framing: one chunk per part, then the closing delimiter."""
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
    for data in parts:
        yield b"".join((head, data, b"\r\n"))
    yield f"--{boundary}--\r\n".encode("ascii")


# -- STOW-RS request bodies ------------------------------------------------------------
class StowBodyError(InputError):
    """The multipart body of a STOW-RS request is malformed."""


class StowTooLarge(Exception):
    """A STOW-RS request body passed the size cap (``max_bytes``) while streaming in."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the STOW-RS body exceeds {max_bytes / 1_000_000:g} MB")
        self.max_bytes = max_bytes


async def capped(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """``chunks`` as they come, raising :class:`StowTooLarge` at the first byte past
    ``max_bytes`` (before that chunk reaches the spool)."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise StowTooLarge(max_bytes)
        yield chunk


@dataclass
class SpooledPart:
    """One body part of a STOW request, written to ``path``."""

    index: int
    content_type: str
    path: Path


_PARAM = re.compile(r';\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def media_params(content_type: str) -> tuple[str, dict[str, str]]:
    """``(type/subtype, {param: value})`` of a Content-Type or Accept item, lower-cased."""
    kind, _, rest = content_type.partition(";")
    params = {
        m.group(1).lower(): m.group(2).strip().strip('"') for m in _PARAM.finditer(";" + rest)
    }
    return kind.strip().lower(), params


def _part_type(headers: bytes) -> str:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            return value.decode("latin-1").strip()
    return ""


async def spool_multipart(
    chunks: AsyncIterator[bytes], boundary: str, folder: Path
) -> list[SpooledPart]:
    """Write each part of a ``multipart/related`` body to a file in ``folder`` as it
    arrives (memory holds one network chunk, not a part)."""
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    buf = bytearray(b"\r\n")  # so that a delimiter at the very start matches too
    state = "preamble"
    parts: list[SpooledPart] = []
    out: io.BufferedWriter | None = None
    try:
        async for chunk in chunks:
            buf += chunk
            while True:
                if state == "preamble":
                    at = buf.find(delimiter)
                    if at < 0:
                        del buf[: max(0, len(buf) - len(delimiter))]
                        break
                    del buf[: at + len(delimiter)]
                    state = "delimited"
                if state == "delimited":
                    if len(buf) < 2:
                        break
                    if buf[:2] == b"--":
                        state = "done"
                        break
                    state = "headers"
                if state == "headers":
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > _MAX_PART_HEADERS:
                            raise StowBodyError("a body part's headers exceed 16 kB")
                        break
                    kind = _part_type(bytes(buf[:end]))
                    del buf[: end + 4]
                    path = folder / f"part-{len(parts):06d}"
                    out = path.open("wb")
                    parts.append(SpooledPart(len(parts), kind, path))
                    state = "body"
                if state == "body":
                    assert out is not None
                    at = buf.find(delimiter)
                    if at < 0:
                        keep = len(delimiter) - 1
                        if len(buf) > keep:
                            out.write(buf[: len(buf) - keep])
                            del buf[: len(buf) - keep]
                        break
                    out.write(buf[:at])
                    out.close()
                    out = None
                    del buf[: at + len(delimiter)]
                    state = "delimited"
                if state == "done":
                    break
    finally:
        if out is not None:
            out.close()
    if state != "done":
        raise StowBodyError("the multipart body ends before its closing delimiter")
    if not parts:
        raise StowBodyError("the multipart body has no parts")
    return parts
