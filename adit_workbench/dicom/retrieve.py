"""Retrieve streams: the instances of a patient, study, series or instance, one at a time.

Three ways in, one shape out (an iterator of Datasets with their file meta):

* DIMSE C-GET: the server sends the instances over our own association. pynetdicom hands
  each one to a handler on its association thread; a bounded queue carries them to the
  consumer, so a slow consumer slows the server down instead of filling memory.
* WADO-RS: dicomweb-client's ``iter_study``/``iter_series`` read the multipart answer
  as it arrives.
* A folder: the matching files, read in full.

C-MOVE through the workbench's Store SCP receiver is the transfer layer's next step: it
needs a long-running receiver that routes incoming instances to the waiting request.

The query names what to fetch by its unique keys: StudyInstanceUID for a study,
plus SeriesInstanceUID for a series, plus SOPInstanceUID for one instance (PatientID
alone for a whole patient).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydicom import Dataset, dcmread

from ..errors import DicomStatusError, InputError, NodeUnreachable
from .folder import iter_headers, matches
from .node import QueryLevel, QueryRoot

if TYPE_CHECKING:
    from .dicomweb import DicomWebNode
    from .dimse import DimseNode, RetrieveResult
    from .folder import FolderNode

__all__ = ["QUEUE_SIZE", "iter_cget", "iter_folder", "iter_wado"]

#: Instances buffered between the C-GET association thread and the consumer.
QUEUE_SIZE = 16
_POLL = 0.2
_DONE = object()
_REFUSED = 0xA700  # out of resources: what we answer once the consumer has gone


def _uid(query: Dataset, keyword: str) -> str:
    value = query.get(keyword, "")
    return str(value) if value else ""


def iter_cget(
    node: DimseNode,
    level: QueryLevel | str,
    query: Dataset,
    *,
    root: QueryRoot | str | None = None,
) -> Iterator[Dataset]:
    """Stream the instances a C-GET delivers.

    Raises :class:`~adit_workbench.errors.DicomStatusError` at the end when the server
    reports failed sub-operations, so a partial retrieve is never mistaken for a full one.
    """
    level = QueryLevel.parse(level)
    buffer: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
    consumer_gone = threading.Event()
    outcome: dict[str, Any] = {}

    def put(item: Any) -> bool:
        while not consumer_gone.is_set():
            try:
                buffer.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def on_store(event: Any) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        return 0x0000 if put(dataset) else _REFUSED

    def run() -> None:
        try:
            outcome["result"] = node.get(level, query, on_store, root=root, cancel=consumer_gone)
        except BaseException as exc:  # handed to the consumer's thread below
            outcome["error"] = exc
        finally:
            put(_DONE)

    worker = threading.Thread(target=run, name=f"wb-cget-{node.name}", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                break
            yield item
    finally:
        consumer_gone.set()
        worker.join(node.settings.dimse_timeout + node.settings.network_timeout)
    if "error" in outcome:
        raise outcome["error"]
    result: RetrieveResult = outcome["result"]
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
            yield dcmread(path)
