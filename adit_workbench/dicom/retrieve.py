"""Retrieve streams: the instances of a patient, study, series or instance, one at a time.

Three ways in, one shape out (an iterator of Datasets with their file meta):

* DIMSE C-GET: the server sends the instances over our own association, read off the
  socket by :mod:`.scu` one at a time as the consumer asks, so a slow consumer slows the
  server down instead of filling memory.
* WADO-RS: dicomweb-client's ``iter_study``/``iter_series`` read the multipart answer
  as it arrives.
* A folder: the matching files, read in full.

* C-MOVE to the workbench's Store SCP receiver (:mod:`.receiver`): the receiver spools
  each arriving instance to ``<spool>/<our AE>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``
  and :func:`iter_cmove` claims the files of its study while the move runs, so receiver
  and consumer may be different processes (or machines sharing the spool folder).

The ``encoded`` streams (C-GET with ``encoded=True``, :func:`iter_wado_encoded`) yield
Part-10 bytes without decoding them: the transfer layer hands those to worker processes,
and decoding in the receiving process would cost the CPU it needs for the network.

The query names what to fetch by its unique keys: StudyInstanceUID for a study,
plus SeriesInstanceUID for a series, plus SOPInstanceUID for one instance (PatientID
alone for a whole patient).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import Dataset, dcmread

from ..errors import DicomStatusError, InputError, NodeUnreachable
from .folder import iter_headers, matches
from .node import QueryLevel, QueryRoot
from .part10 import Malformed, read_checked

if TYPE_CHECKING:
    from .dicomweb import DicomWebNode
    from .dimse import DimseNode, RetrieveResult
    from .folder import FolderNode

__all__ = [
    "iter_cget",
    "iter_cmove",
    "iter_folder",
    "iter_wado",
    "iter_wado_encoded",
]


def _uid(query: Dataset, keyword: str) -> str:
    value = query.get(keyword, "")
    return str(value) if value else ""


def iter_cget(
    node: DimseNode,
    level: QueryLevel | str,
    query: Dataset,
    *,
    root: QueryRoot | str | None = None,
    encoded: bool = False,
) -> Iterator[Any]:
    """Stream the instances a C-GET delivers (Datasets, or Part-10 bytes if ``encoded``).

    Raises :class:`~adit_workbench.errors.DicomStatusError` at the end when the server
    reports failed sub-operations, so a partial retrieve is never mistaken for a full one.
    """
    stream = node.get_stream(level, query, root=root)
    try:
        while True:
            try:
                data = next(stream)
            except StopIteration as stop:
                result: RetrieveResult = stop.value
                break
            yield data if encoded else dcmread(io.BytesIO(data))
    finally:
        stream.close()  # early: a C-CANCEL at the server
    if result.failed:
        raise DicomStatusError(
            node.name,
            "C-GET",
            result.status,
            result.category,
            f"{result.failed} of {result.failed + result.completed} instances failed",
        )


def iter_wado(node: DicomWebNode, level: QueryLevel | str, query: Dataset) -> Iterator[Dataset]:
    """Stream the instances of a study, series or instance over WADO-RS.

    PATIENT level first finds the patient's studies over QIDO, then streams each.
    """
    level = QueryLevel.parse(level)
    study, series, sop = (
        _uid(query, "StudyInstanceUID"),
        _uid(query, "SeriesInstanceUID"),
        _uid(query, "SOPInstanceUID"),
    )
    if level is QueryLevel.PATIENT:
        if not _uid(query, "PatientID"):
            raise InputError("a patient retrieve needs a PatientID")
        wanted = Dataset()
        wanted.PatientID = _uid(query, "PatientID")
        wanted.StudyInstanceUID = ""
        studies = [str(ds.StudyInstanceUID) for ds in node.find(QueryLevel.STUDY, wanted)]
        for uid in studies:
            with node.wrap("WADO-RS"):
                yield from node.client.iter_study(uid)
        return
    if not study:
        raise InputError("a WADO-RS retrieve needs a StudyInstanceUID")
    with node.wrap("WADO-RS"):
        if level is QueryLevel.STUDY:
            yield from node.client.iter_study(study)
        elif level is QueryLevel.SERIES or not sop:
            if not series:
                raise InputError("a series retrieve needs a SeriesInstanceUID")
            yield from node.client.iter_series(study, series)
        else:
            if not series:
                raise InputError("an instance retrieve needs a SeriesInstanceUID")
            yield node.client.retrieve_instance(study, series, sop)


def iter_folder(node: FolderNode, level: QueryLevel | str, query: Dataset) -> Iterator[Dataset]:
    """The matching files of a folder node, read in full."""
    QueryLevel.parse(level)
    if not node.path.is_dir():
        raise NodeUnreachable(node.name, "READ", "folder does not exist")
    for path, header in iter_headers(node.path):
        if matches(header, query):
            try:
                yield read_checked(path)  # checked again: it may have changed since
            except (Malformed, OSError, ValueError):
                continue


# -- WADO-RS, undecoded ----------------------------------------------------------------
_WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_CHUNK = 1 << 20


def iter_wado_encoded(
    node: DicomWebNode,
    study: str,
    series: str | None = None,
    sops: Collection[str] | None = None,
) -> Iterator[bytes]:
    """Stream the Part-10 files of a study, a series, or some instances of a series.

    Reads the multipart answer as it arrives and yields each part's bytes undecoded
    (dicomweb-client parses every instance, which costs about half the throughput).
    """
    if not study:
        raise InputError("a WADO-RS retrieve needs a StudyInstanceUID")
    base = f"{node.service_url('wado')}/studies/{study}"
    if sops:
        if not series:
            raise InputError("an instance retrieve needs a SeriesInstanceUID")
        urls = [f"{base}/series/{series}/instances/{sop}" for sop in sops]
    else:
        urls = [f"{base}/series/{series}" if series else base]
    for url in urls:
        with node.wrap("WADO-RS"):
            response = node.session.get(url, headers={"Accept": _WADO_ACCEPT}, stream=True)
            try:
                response.raise_for_status()
                yield from _multipart(response.headers.get("Content-Type", ""), response)
            finally:
                response.close()


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            return value.strip().strip('"').encode("latin-1")
    raise ValueError("multipart answer without a boundary")


def _multipart(content_type: str, response: Any) -> Iterator[bytes]:
    """The bodies of a ``multipart/related`` stream, one part in memory at a time."""
    delimiter = b"\r\n--" + _boundary(content_type)
    buf = bytearray(b"\r\n")  # so that a delimiter at the very start matches too
    start: int | None = None  # where the current part's body begins
    scan = 0
    for chunk in response.iter_content(chunk_size=_CHUNK):
        if scan > len(chunk):  # drop what was consumed, now and then (a memmove)
            head = scan if start is None else start
            del buf[:head]
            scan -= head
            if start is not None:
                start = 0
        buf += chunk
        while True:
            if start is None:
                at = buf.find(delimiter, scan)
                if at < 0:
                    scan = max(scan, len(buf) - len(delimiter))
                    break
                head_end = buf.find(b"\r\n\r\n", at + len(delimiter))
                if head_end < 0:
                    if buf[at + len(delimiter) : at + len(delimiter) + 2] == b"--":
                        return  # closing delimiter
                    scan = at
                    break
                start = head_end + 4
                scan = start
            at = buf.find(delimiter, scan)
            if at < 0:
                scan = max(start, len(buf) - len(delimiter))
                break
            with memoryview(buf) as view:
                yield bytes(view[start:at])  # one copy, not a slice and then a copy
            start, scan = None, at


# -- C-MOVE through the receiver's spool -------------------------------------------------
def _release(own: Path, folder: Path) -> None:
    """A move is over: what is still in its folder (the consumer stopped early) goes to
    the study folder, where a re-run claims it."""
    try:
        leftovers = list(own.iterdir())
    except FileNotFoundError:
        return
    for path in leftovers:
        if path.suffix == ".dcm":
            with contextlib.suppress(OSError):
                os.replace(path, folder / path.name)
    with contextlib.suppress(OSError):  # a receiver's temporary file still in it
        own.rmdir()


def _series_of(path: Path) -> str:
    """The SeriesInstanceUID of a spooled file ("" when unreadable): only files that no
    move of ours named are read for it (a PACS that leaves out the move's Message ID,
    or a receiver in another process)."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
    except Exception:  # claimed, or broken: not ours to take
        return ""
    return str(ds.get("SeriesInstanceUID", "") or "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def iter_cmove(
    node: DimseNode,
    level: QueryLevel | str,
    query: Dataset,
    *,
    spool: Path,
    destination: str | None = None,
    expected: Collection[str] | None = None,
    series: str | None = None,
    root: QueryRoot | str | None = None,
    poll: float = 0.05,
) -> Iterator[Path]:
    """C-MOVE to our receiver and yield the spooled files of this study as they arrive.

    Each yielded path has been *claimed* (renamed into a private folder), so two
    consumers never get the same file; the caller deletes it when done. ``expected``
    (source SOP Instance UIDs) limits what is claimed, leaving other transfers' files
    alone. Without ``expected``, ``series`` (a whole series moved, its instances not
    listed) limits what is claimed from the study folder to that series; this move's own
    folder holds only what it asked for. The move has a Message ID no other move of this
    process has, and a receiver
    here spools its instances in a folder of their own: two moves of one study at once
    each get all of it. Files that arrive for a consumer that stopped early stay
    spooled, and a re-run claims them instead of moving them again.
    """
    from .receiver import expect_move, expect_peer, move_spool, study_spool

    level = QueryLevel.parse(level)
    study = _uid(query, "StudyInstanceUID")
    if not study:
        raise InputError("a C-MOVE retrieve needs a StudyInstanceUID")
    destination = destination or node.settings.ae_title
    folder = study_spool(spool, destination, study)
    claim = folder / f".claim-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    claim.mkdir(parents=True, exist_ok=True)
    wanted = set(expected) if expected is not None else None
    only_series = series if wanted is None else None
    outcome: dict[str, Any] = {}
    stop = threading.Event()

    def run() -> None:
        try:
            # Our receiver takes C-STOREs only from a node we are moving from.
            with expect_peer(node.spec.ae_title, node.spec.host):
                outcome["result"] = node.move(
                    level, query, destination, root=root, cancel=stop, message_id=message_id
                )
        except BaseException as exc:  # re-raised in the consumer's thread
            outcome["error"] = exc

    def orphans() -> Iterator[Path]:
        # Files claimed by a consumer that died (killed mid-transfer) are ours now.
        for old in folder.glob(".claim-*"):
            pid = old.name.split("-")[1]
            if old == claim or not pid.isdigit() or _alive(int(pid)):
                continue
            for path in old.glob("*.dcm"):
                if wanted is not None and path.stem not in wanted:
                    continue
                if only_series and _series_of(path) != only_series:
                    continue
                target = claim / path.name
                try:
                    os.rename(path, target)
                except FileNotFoundError:
                    continue
                yield target
            with contextlib.suppress(OSError):
                old.rmdir()

    def sweep() -> Iterator[Path]:
        # This move's folder, and the study's (left over, or from a PACS that does not
        # name the move in its C-STOREs).
        for source in (own, folder):
            try:
                with os.scandir(source) as entries:
                    names = [e.name for e in entries if e.name.endswith(".dcm") and e.is_file()]
            except FileNotFoundError:  # nothing arrived there yet
                continue
            for name in names:
                if name.startswith(".") or (wanted is not None and name[:-4] not in wanted):
                    continue
                if only_series and source is folder and _series_of(source / name) != only_series:
                    continue  # another transfer's, of another series of the study
                target = claim / name
                try:
                    os.rename(source / name, target)
                except FileNotFoundError:  # another consumer claimed it first
                    continue
                yield target

    moving = expect_move()  # a Message ID of its own: a folder of its own (receiver)
    message_id = moving.__enter__()
    own = move_spool(spool, destination, study, message_id)
    try:
        worker = threading.Thread(target=run, name=f"wb-cmove-{node.name}", daemon=True)
        worker.start()
        try:
            yield from orphans()
            yield from sweep()  # left over from an interrupted run
            while worker.is_alive():
                worker.join(poll)
                yield from sweep()
            yield from sweep()
        finally:
            stop.set()  # a consumer that stops early: C-CANCEL, abort within a second
            worker.join(node.settings.dimse_timeout + node.settings.network_timeout)
    finally:
        moving.__exit__(None, None, None)
        _release(own, folder)
        with contextlib.suppress(OSError):  # the caller still holds claimed files
            claim.rmdir()
    if "error" in outcome:
        raise outcome["error"]
    result: RetrieveResult = outcome["result"]
    if result.failed:
        raise DicomStatusError(
            node.name,
            "C-MOVE",
            result.status,
            result.category,
            f"{result.failed} of {result.failed + result.completed} instances failed",
        )
