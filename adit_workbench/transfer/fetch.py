"""How a transfer fetches: the choice of method, and the producers that feed the pool.

WADO-RS, then C-GET, then C-MOVE to our receiver, by the source's (probed or typed)
capabilities unless the caller names one. When nothing is to be changed and the
destination is a DIMSE server, the source is first asked to C-MOVE straight to it (the
data never passes through us); a source that does not know the destination's AE title
refuses, and the transfer falls back to fetching.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset

from ..deid import Pseudonymizer
from ..dicom.folder import iter_headers
from ..dicom.node import QueryLevel
from ..dicom.receiver import shared_receiver
from ..dicom.retrieve import iter_cmove
from ..errors import DicomStatusError, InputError, NotSupported
from .defaults import WORKERS
from .destinations import ServerDestination, Sink
from .pipeline import Submitter, Tally
from .plan import SeriesPlan, TransferPlan
from .result import TransferProgress
from .worker import Stream

__all__ = ["Fetch", "choose_fetch", "direct_move", "producer_for"]

log = logging.getLogger(__name__)

_METHODS = ("auto", "wado", "cget", "cmove")
_FILE_BATCH = 4
#: C-MOVE refusals that mean "I do not know that destination" (Orthanc: 0xC000).
_UNKNOWN_DESTINATION = (0xA801, 0xC000)


@dataclass(frozen=True)
class Fetch:
    """The chosen method and how many streams may run at once."""

    method: str  # "wado" | "cget" | "cmove" | "folder" | "direct-move"
    streams: int = 1


def _dimse(node: Any) -> Any:
    return getattr(node, "dimse", None)


def _web(node: Any) -> Any:
    return getattr(node, "dicomweb", None)


def _is_folder(node: Any) -> bool:
    return (
        _dimse(node) is None
        and _web(node) is None
        and isinstance(getattr(node, "path", None), Path)
    )


def choose_fetch(
    source: Any,
    target: Any,
    via: str,
    pseudonymizer: Pseudonymizer | None,
    exclude: frozenset[str],
    *,
    allow_direct: bool = True,
) -> Fetch:
    """Pick the fetch method for ``source`` (see the module docstring)."""
    via = str(via or "auto").lower()
    if via not in _METHODS:
        raise InputError(f"unknown via {via!r}: use auto, wado, cget or cmove")
    if _is_folder(source):
        return Fetch("folder", WORKERS)
    spec = getattr(source, "spec", None)
    if spec is None:
        raise InputError(f"cannot fetch from {type(source).__name__}")
    caps = spec.capabilities
    dimse, web = _dimse(source), _web(source)
    limit = max(1, int(spec.max_associations))
    if (
        allow_direct
        and via in ("auto", "cmove")
        and pseudonymizer is None
        and dimse is not None
        and (caps.study_root_move or via == "cmove")
        and isinstance(target, ServerDestination)
        and target.via in (None, "dimse")
        and _dimse(target.node) is not None
    ):
        return Fetch("direct-move", 1)
    if via == "auto":
        if web is not None and caps.wado:
            via = "wado"
        elif dimse is not None and caps.study_root_get:
            via = "cget"
        elif dimse is not None and caps.study_root_move:
            via = "cmove"
        else:
            via = "wado" if web is not None else "cget"
    if via == "wado":
        if web is None:
            raise NotSupported(source.name, "WADO-RS", "no DICOMweb root configured")
        return Fetch("wado", limit)
    if dimse is None:
        raise NotSupported(source.name, via.upper(), "no DIMSE address configured")
    if via == "cget":
        # The parent's pool may hold an idle association from the queries: each worker
        # opens one of its own, and together they must stay within the node's limit.
        return Fetch("cget", max(1, limit - dimse.pool.open_count))
    return Fetch("cmove", WORKERS)


def move_query(study_uid: str, series: SeriesPlan) -> tuple[QueryLevel, Dataset]:
    """The C-MOVE identifier for what is left of a series."""
    query = Dataset()
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series.uid
    if series.whole or len(series.todo) == len(series.instances or ()):
        return QueryLevel.SERIES, query
    query.SOPInstanceUID = series.todo if len(series.todo) > 1 else series.todo[0]
    return QueryLevel.IMAGE, query


def direct_move(
    source: Any,
    target: ServerDestination,
    sink: Sink,
    plan: TransferPlan,
    tally: Tally,
    progress: Callable[[TransferProgress], None] | None,
    cancelled: Callable[[], bool],
    fetch: Fetch,
) -> Fetch:
    """C-MOVE from the source straight to the destination; verify by querying it.

    Returns ``fetch`` when done, or the method to fall back to when the source does
    not know the destination.
    """
    dimse = _dimse(source)
    destination = target.node
    destination.store([])  # checks the destination role when the node is guarded
    dest_ae = destination.spec.ae_title
    moved_any = False
    for series in plan.series:
        if not series.todo or cancelled():
            continue
        level, query = move_query(plan.study_uid, series)
        try:
            dimse.move(level, query, dest_ae)
        except (DicomStatusError, NotSupported) as exc:
            refused = isinstance(exc, NotSupported) or exc.status in _UNKNOWN_DESTINATION
            if moved_any or not refused:
                raise
            log.info("direct C-MOVE refused (%s); fetching instead", exc.detail)
            return choose_fetch(source, target, "auto", None, frozenset(), allow_direct=False)
        moved_any = True
        if progress is not None:
            held = sink.existing()
            done = sum(1 for s in plan.series for u in s.todo if u in held)
            progress(TransferProgress(done, tally.total, 0, None, phase="direct-move"))
    held = sink.existing()
    tally.delivered |= {u for u in plan.todo if u in held}
    return fetch


def _release_idle(source: Any) -> None:
    """Let the plan's idle associations go: fetching uses associations of its own, and
    an idle pynetdicom association polls at 1 kHz (6 % of a core, and the GIL). Done by
    the producer, so that no one waits for pynetdicom's release (~14 ms)."""
    dimse = _dimse(source)
    if dimse is not None:
        dimse.pool.release_idle()


def producer_for(
    fetch: Fetch,
    source: Any,
    plan: TransferPlan,
    streams: list[Stream],
    settings: Any,
    cancelled: Callable[[], bool],
) -> Callable[[Submitter], None]:
    """What the round's producer thread does for ``fetch``."""
    if fetch.method in ("cget", "wado"):

        def submit_streams(submit: Submitter) -> None:
            for stream in streams:
                submit.stream(stream)
            _release_idle(source)

        return submit_streams

    if fetch.method == "folder":

        def submit_files(submit: Submitter) -> None:
            todo = set(plan.todo)
            batch: list[str] = []
            for path, header in iter_headers(source.path):
                if cancelled():
                    return
                if str(header.get("SOPInstanceUID", "")) in todo:
                    batch.append(str(path))
                    if len(batch) >= _FILE_BATCH:
                        submit.files(batch, delete=False)
                        batch = []
            submit.files(batch, delete=False)

        return submit_files

    def submit_moved(submit: Submitter) -> None:
        dimse = _dimse(source)
        _release_idle(source)  # each C-MOVE runs on an association of its own

        def move_series(series: SeriesPlan, spool: Path) -> None:
            if cancelled():
                return
            level, query = move_query(plan.study_uid, series)
            batch: list[str] = []
            # A whole series (a fresh destination) is not listed first: its instances
            # are this move's, and only its own in the study folder are claimed.
            expected = None if series.whole else set(series.todo)
            paths = iter_cmove(
                dimse, level, query, spool=spool, expected=expected, series=series.uid
            )
            for path in paths:
                batch.append(str(path))
                if len(batch) >= _FILE_BATCH:
                    submit.files(batch, delete=True)
                    batch = []
            submit.files(batch, delete=True)

        todo = [series for series in plan.series if series.todo or series.whole]
        # A PACS sends a C-MOVE's instances one at a time, each waiting for the
        # receiver's answer: series moved side by side keep both cores busy.
        parallel = max(1, min(len(todo), fetch.streams, source.spec.max_associations))
        with shared_receiver(settings) as spool, ThreadPoolExecutor(parallel) as threads:
            for done in [threads.submit(move_series, series, spool) for series in todo]:
                done.result()

    return submit_moved
