"""The worker-process side of the pipeline: fetch, pseudonymize, stage.

A transfer runs a process pool (both cores: receiving, parsing and pseudonymizing are
CPU-bound Python, so threads would share one core). Each task
is one *stream* — a series or a slice of one fetched over C-GET or WADO-RS, or a batch of
files (spooled by the C-MOVE receiver, or a folder source) — and every instance is
handled as it arrives: parsed from its bytes, excluded or pseudonymized, and written to
the transfer's staging folder. What goes back to the parent is a short message per
instance on a bounded pipe (an :class:`~.layout.InstanceInfo`, never pixel data; a few
at a time), so workers block when delivery falls behind and memory stays flat whatever
the study size.

Messages are ``(kind, task_id, payload)`` with kind ``ok`` (payload: InstanceInfo),
``excluded``/``refused``/``failed`` (payload: ``(source SOP UID, reason)``). A task
returns how many messages it sent, so the parent knows when it has them all.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pydicom
from pydicom import Dataset

from ..deid import BurnedInRefused, Pseudonymizer
from ..deid.encoded import engine_for
from ..deid.splice import write_spliced
from ..deid.temporal import shift_da
from ..dicom.part10 import Malformed, Part10, Unsupported, check_elements, read_regular
from .layout import InstanceInfo, Placement

if TYPE_CHECKING:
    from ..config import Settings
    from ..dicom.spec import ServerSpec

__all__ = [
    "Stream",
    "TaskOutcome",
    "WorkerConfig",
    "fetch_stream",
    "init_worker",
    "prepare",
    "prepare_files",
]


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs, sent once when the pool starts (all picklable)."""

    staging: str
    settings: Settings
    pseudonymizer: Pseudonymizer | None = None
    exclude: frozenset[str] = frozenset()
    source: ServerSpec | None = None
    #: A folder destination's layout: workers rename their files into place.
    placement: Placement | None = None


@dataclass(frozen=True)
class Stream:
    """One fetch stream: a series, or some of its instances (``sops``)."""

    task_id: int
    method: str  # "cget" | "wado"
    study: str
    series: str
    sops: tuple[str, ...] = ()


_config: WorkerConfig | None = None
_results: Any = None
_cancel: Any = None
_nodes: dict[str, Any] = {}


_parent = 0


def init_worker(config: WorkerConfig, results: Any, cancel: Any) -> None:
    """Pool initializer: keep the config, the message pipe and the cancel event."""
    global _config, _results, _cancel, _parent
    _config, _results, _cancel, _parent = config, results, cancel, os.getppid()
    _nodes.clear()
    _made.clear()


class _Decoded:
    """A dataset read by pydicom, answering ``text()`` as :class:`~..dicom.part10.Part10` does."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def text(self, keyword: str) -> str:
        value = self.ds.get(keyword, "")
        return "" if value is None else str(value).strip()


class _Facts(Protocol):
    def text(self, keyword: str) -> str: ...


_names = itertools.count()
_token = ""


def _new_token() -> None:
    """A random name prefix per process: staged names must not repeat across workers."""
    global _token
    _token = os.urandom(4).hex()


_new_token()
os.register_at_fork(after_in_child=_new_token)


def prepare(config: WorkerConfig, data: bytes, hint: str = "") -> tuple[str, Any]:
    """One instance from its Part-10 bytes to a staged file: ``(kind, payload)``.

    The bytes are scanned, not decoded (:mod:`..deid.encoded`); what the scanner leaves
    to pydicom (big endian, no preamble …) is read by pydicom.
    """
    pseudonymizer = config.pseudonymizer
    try:
        facts: _Facts = Part10.parse(data)
    except Malformed as exc:  # cut, impossible lengths, too deep: never passed on
        return "failed", (hint, f"refused: {exc}")
    except Unsupported:
        try:
            # Copied as is: the header suffices (the bytes are written untouched).
            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=not pseudonymizer)
            check_elements(ds)
            facts = _Decoded(ds)
        except Malformed as exc:
            return "failed", (hint, f"refused: {exc}")
        except Exception as exc:  # one unreadable instance must not stop the study; no PHI
            return "failed", (hint, f"unreadable: {type(exc).__name__}")
    source_sop = facts.text("SOPInstanceUID") or hint
    modality = facts.text("Modality").upper()
    if modality in config.exclude:
        return "excluded", (source_sop, modality)
    staged = _staged(config.staging)
    # Read now: the pydicom path pseudonymizes its dataset in place.
    folder_date = _folder_date(pseudonymizer, facts)
    try:
        if pseudonymizer is None:
            staged.write_bytes(data)
            size = len(data)
        else:
            facts, size = _pseudonymize(pseudonymizer, facts, data, staged)
    except BurnedInRefused:
        return "refused", (source_sop, "may carry burned-in text")
    except Exception as exc:
        staged.unlink(missing_ok=True)
        return "failed", (source_sop, f"not prepared: {type(exc).__name__}")
    info = InstanceInfo(
        source_sop=source_sop,
        sop_uid=facts.text("SOPInstanceUID"),
        sop_class=facts.text("SOPClassUID"),
        series_uid=facts.text("SeriesInstanceUID"),
        study_uid=facts.text("StudyInstanceUID"),
        patient_id=facts.text("PatientID"),
        modality=modality,
        series_number=facts.text("SeriesNumber"),
        series_description=facts.text("SeriesDescription"),
        study_date=facts.text("StudyDate") or folder_date,
        study_time=facts.text("StudyTime"),
        staged=str(staged),
        size=size,
    )
    if config.placement is not None:
        try:
            info = _place(config.placement, info)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            return "failed", (source_sop, f"not delivered: {exc.strerror or type(exc).__name__}")
    return "ok", info


def _folder_date(pseudonymizer: Pseudonymizer | None, source: _Facts) -> str:
    """The study date for folder names when the profile removed it: the patient's
    shifted date (as the modified-dates option would write it), so that a pseudonymized
    layout still sorts by date instead of reading ``00000000``."""
    if pseudonymizer is None:
        return ""
    date = source.text("StudyDate")
    return shift_da(date, pseudonymizer.date_shift(source.text("PatientID"))) if date else ""


#: Folders this process has made (a cache: a folder removed since is made again).
_made: set[Path] = set()


def _stopped() -> bool:
    """Cancelled, or orphaned: a worker whose transfer died must not deliver on."""
    return bool(_cancel.is_set()) or os.getppid() != _parent


def _staged(staging: str) -> Path:
    """A new file name in this process's own staging folder (no other process writes
    there, so creating files never waits for another's renames)."""
    folder = Path(staging, _token)
    if folder not in _made:
        folder.mkdir(exist_ok=True)
        _made.add(folder)
    # A counter, not uuid4: getrandom() per instance is slow on virtual machines.
    return folder / f"{next(_names)}.dcm"


def _place(placement: Placement, info: InstanceInfo) -> InstanceInfo:
    """Rename the staged file into the folder destination (atomic: same file system)."""
    target = placement.path_for(info)
    if target.parent not in _made:
        target.parent.mkdir(parents=True, exist_ok=True)
        _made.add(target.parent)
    try:
        os.replace(info.staged, target)
    except FileNotFoundError:  # the folder went away since it was made: make it again
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(info.staged, target)
    return replace(info, staged=str(target), placed=True)


def _pseudonymize(
    pseudonymizer: Pseudonymizer, facts: _Facts, data: bytes, staged: Path
) -> tuple[_Facts, int]:
    """Write the pseudonymized instance to ``staged``: the output's facts and size."""
    if isinstance(facts, Part10):
        out = engine_for(pseudonymizer)(facts)
        if out is not None:
            return out, out.write(staged)
        facts = _Decoded(pydicom.dcmread(io.BytesIO(data), force=True))
    assert isinstance(facts, _Decoded)
    pseudonymizer(facts.ds)
    write_spliced(facts.ds, data, staged)
    return facts, staged.stat().st_size


#: Messages a worker collects before it writes them to the parent, unless it has not
#: written for this long (so slow streams report each instance at once).
_BATCH = 8
_BATCH_SECONDS = 0.05


class _Outbox:
    """A task's messages to the parent, written in batches: a pipe write per instance
    woke the parent for each and cost the worker about 0.1 ms."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        self.items: list[tuple[str, int, Any]] = []
        self.written = 0.0

    def add(self, kind: str, payload: Any) -> None:
        self.items.append((kind, self.task_id, payload))
        if len(self.items) >= _BATCH or time.monotonic() - self.written >= _BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.items:
            _results.put(self.items)
            self.items = []
            self.written = time.monotonic()


def _emit(task_id: int, items: Iterable[bytes], hint: str = "") -> None:
    assert _config is not None
    outbox = _Outbox(task_id)
    try:
        for data in items:
            outbox.add(*prepare(_config, data, hint))
            if _stopped():
                break
    finally:
        outbox.flush()


def _encoded(stream: Stream) -> Generator[bytes, None, None]:
    from ..dicom.dicomweb import DicomWebNode
    from ..dicom.dimse import DimseNode
    from ..dicom.node import QueryLevel
    from ..dicom.retrieve import iter_cget, iter_wado_encoded

    assert _config is not None and _config.source is not None
    spec, settings = _config.source, _config.settings
    if stream.method == "wado":
        web = _nodes.get("wado")
        if web is None:
            web = _nodes["wado"] = DicomWebNode(spec, settings)
        yield from iter_wado_encoded(web, stream.study, stream.series, stream.sops or None)
        return
    dimse = _nodes.get("cget")
    if dimse is None:
        # One association per worker: the parent sizes the pool within the node's limit.
        dimse = _nodes["cget"] = DimseNode(spec.replace(max_associations=1), settings)
    query = Dataset()
    query.StudyInstanceUID = stream.study
    query.SeriesInstanceUID = stream.series
    level = QueryLevel.SERIES
    if stream.sops:
        level = QueryLevel.IMAGE
        query.SOPInstanceUID = list(stream.sops) if len(stream.sops) > 1 else stream.sops[0]
    yield from iter_cget(dimse, level, query, encoded=True)


#: A task's outcome: messages sent, and the error that ended it as (type, text, retriable).
#: Errors travel as plain values: the workbench's errors take several constructor
#: arguments, which exception pickling across processes does not survive.
TaskOutcome = tuple[int, tuple[str, str, bool] | None]


def fetch_stream(stream: Stream) -> TaskOutcome:
    """Task: fetch one stream and prepare each instance as it arrives."""
    if _stopped():
        return 0, None
    items = _encoded(stream)
    sent = [0]

    def counted() -> Iterator[bytes]:
        for data in items:
            sent[0] += 1
            yield data

    try:
        _emit(stream.task_id, counted())
    except Exception as exc:
        return sent[0], (type(exc).__name__, str(exc), bool(getattr(exc, "retriable", False)))
    finally:
        items.close()  # a cancelled C-GET is cancelled at the server, not left running
        # Release now: an idle association would keep the worker alive at pool shutdown
        # (pynetdicom's threads) until the network timeout.
        for node in _nodes.values():
            node.close()
        _nodes.clear()
    return sent[0], None


def prepare_files(task_id: int, paths: list[str], delete: bool) -> TaskOutcome:
    """Task: prepare files (spooled by the receiver, or a folder source's)."""
    sent = 0
    assert _config is not None
    outbox = _Outbox(task_id)
    try:
        for path in paths:
            if _stopped():
                break
            try:
                data = read_regular(path)  # a FIFO swapped in since the listing: refused
            except (OSError, Malformed) as exc:
                outbox.add("failed", (Path(path).stem, f"unreadable: {exc}"))
            else:
                outbox.add(*prepare(_config, data, Path(path).stem))
            sent += 1
            if delete:
                with contextlib.suppress(OSError):
                    os.unlink(path)
    finally:
        outbox.flush()
    return sent, None
