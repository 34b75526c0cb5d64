"""Upload: local DICOM files, pseudonymized, stored to a PACS or folder node.

This is the one upload operation; the facade (``wb.upload``), the service route
(``POST /api/uploads``) and the CLI (``adit-workbench upload``) all call
:func:`upload_files`. It lives in the jobs layer, not the transfer layer, because it
checks the user (the ``upload`` permission and the destination role, audit rows) and
pseudonymizes exactly as a transfer job does (:func:`~.execute.build_pseudonymizer`:
the project's key and profile), while the per-instance work is the transfer's own
(:func:`~adit_workbench.transfer.worker.prepare`): the same study with the same
pseudonym and project gets the same UIDs, dates and pseudonym as through a transfer.
It is not a queued job: the files live where the caller is (a kernel's folder, a
request body), not where a worker runs, so the upload runs in the caller's request.

Every file is scanned with the Part-10 scanner first; a malformed, cut or non-DICOM
file is refused by its name, and the rest go through. Memory holds one file (a STOW-RS
batch of at most 20) at a time: prepared instances are staged on disk and removed as
the node takes them.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.errors import InvalidDicomError

from ..access.permissions import NodeRole, Permission
from ..dicom.display import html_table, text_block
from ..dicom.part10 import Malformed, check_bytes, check_elements, read_regular
from ..errors import InputError

if TYPE_CHECKING:
    from ..access import Access
    from ..config import Settings
    from ..store import Database
    from ..transfer.worker import WorkerConfig

__all__ = ["UploadItem", "UploadResult", "iter_folder", "upload_files"]

_OTHER_PATIENT = (
    "another patient than the upload's first file: one pseudonym names one patient "
    "(upload them separately)"
)

#: One file to upload: its name (a relative path, for the report) and its bytes or path.
UploadItem = tuple[str, bytes | os.PathLike[str] | str]


@dataclass
class UploadResult:
    """What an upload did: instances stored, and each refused file with the reason."""

    destination: str
    stored: int = 0
    warnings: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file was refused."""
        return not self.refused

    @property
    def total(self) -> int:
        """Files seen (stored and refused)."""
        return self.stored + len(self.refused)

    def summary(self) -> str:
        """One line of counts."""
        text = f"{self.stored} stored, {len(self.refused)} refused"
        return text + (f", {self.warnings} with warnings" if self.warnings else "")

    def merge(self, other: UploadResult) -> None:
        """Add another part's counts (the remote client uploads in several requests)."""
        self.stored += other.stored
        self.warnings += other.warnings
        self.refused.extend(other.refused)

    def to_dict(self) -> dict[str, Any]:
        """JSON for the service's answer."""
        return {
            "destination": self.destination,
            "stored": self.stored,
            "warnings": self.warnings,
            "refused": [{"file": name, "reason": why} for name, why in self.refused],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UploadResult:
        """The result from the service's JSON answer."""
        return cls(
            str(data["destination"]),
            int(data["stored"]),
            int(data.get("warnings", 0)),
            [(str(r["file"]), str(r["reason"])) for r in data.get("refused", [])],
        )

    def __repr__(self) -> str:
        status = "OK" if self.ok else "NOT OK"
        lines = (f"refused {name}: {why}" for name, why in self.refused)
        return text_block(f"UploadResult {status} to {self.destination}: {self.summary()}",
                          lines, max_lines=11)  # fmt: skip

    def _repr_html_(self) -> str:
        return html_table(("refused file", "why"), self.refused,
                          title=f"Upload to {self.destination}: {self.summary()}",
                          warn=not self.ok, total=len(self.refused))  # fmt: skip


def iter_folder(folder: str | os.PathLike[str]) -> Iterator[UploadItem]:
    """Every file below ``folder`` (recursively, in a stable order) as an upload item
    named by its path relative to ``folder``; hidden files and folders are left out."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"upload: {folder} is not a folder")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                path = Path(dirpath, name)
                yield path.relative_to(root).as_posix(), path


def _admit(data: bytes) -> str | None:
    """Why ``data`` is refused before pseudonymization, or None: the Part-10 scanner
    first; what it leaves to pydicom (no preamble, big endian …) is read strictly."""
    try:
        scanned = check_bytes(data)
    except Malformed as exc:
        return f"malformed: {exc}"
    if scanned is not None:
        missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID") if not scanned.text(k)]
    else:
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            check_elements(ds)
        except Malformed as exc:
            return f"malformed: {exc}"
        except InvalidDicomError:
            return "not a DICOM file"
        except Exception as exc:  # unreadable: no value of it goes into the message
            return f"unreadable ({type(exc).__name__})"
        missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID") if not ds.get(k)]
    if missing:
        return f"not a DICOM instance: no {' or '.join(missing)}"
    return None


class _Feed:
    """Turns upload items into prepared (pseudonymized, staged) instances for
    ``node.store``, recording refusals by file name."""

    def __init__(self, config: WorkerConfig, result: UploadResult, stow: bool, one_patient: bool):
        self.config = config
        self.result = result
        self.stow = stow
        self.one_patient = one_patient
        self.patient: str | None = None
        #: Delivered SOP Instance UID → file name, to name the files the node refuses.
        self.names: dict[str, str] = {}

    def _refuse(self, name: str, why: str) -> None:
        self.result.refused.append((name, why))

    def _data(self, name: str, source: bytes | os.PathLike[str] | str) -> bytes | None:
        if isinstance(source, bytes | bytearray | memoryview):
            return bytes(source)
        try:
            return read_regular(source)  # a FIFO named *.dcm is refused, never waited on
        except Malformed as exc:
            self._refuse(name, str(exc))
        except OSError as exc:
            self._refuse(name, f"unreadable: {exc.strerror or type(exc).__name__}")
        return None

    def __call__(self, items: Iterable[UploadItem]) -> Iterator[Any]:
        from ..transfer.worker import prepare

        previous: Path | None = None
        for name, source in items:
            if previous is not None:  # the node asked for the next: the previous is sent
                previous.unlink(missing_ok=True)
                previous = None
            data = self._data(name, source)
            if data is None:
                continue
            why = _admit(data)
            if why is not None:
                self._refuse(name, why)
                continue
            kind, payload = prepare(self.config, data, name)
            if kind != "ok":
                self._refuse(name, str(payload[1]))
                continue
            if self.one_patient and not self._same_patient(data):
                Path(payload.staged).unlink(missing_ok=True)
                self._refuse(name, _OTHER_PATIENT)
                continue
            staged = Path(payload.staged)
            self.names[payload.sop_uid] = self.names[staged.name] = name
            if self.stow:  # STOW-RS batches what it is given: hand over datasets
                ds = pydicom.dcmread(staged)
                staged.unlink(missing_ok=True)
                yield ds
            else:
                previous = staged
                yield str(staged)
        if previous is not None:
            previous.unlink(missing_ok=True)

    def _same_patient(self, data: bytes) -> bool:
        scanned = check_bytes(data)
        if scanned is not None:
            patient = scanned.text("PatientID")
        else:
            header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            patient = str(header.get("PatientID", "") or "").strip()
        if self.patient is None:
            self.patient = patient
        return patient == self.patient


def upload_files(
    access: Access,
    database: Database,
    settings: Settings,
    items: Iterable[UploadItem],
    *,
    destination: str,
    pseudonym: str | None = None,
    trial_protocol_id: str | None = None,
    trial_protocol_name: str | None = None,
    project_name: str | None = None,
    deid_options: Iterable[str] = (),
    via: str | None = None,
) -> UploadResult:
    """Pseudonymize ``items`` and store them to node ``destination``.

    Needs the ``upload`` permission and the destination role on the node (refused and
    audited otherwise). The pseudonymizer is a transfer job's for the same project,
    pseudonym, trial and options. With a ``pseudonym``, every file must belong to one
    patient (the first file's): files of another are refused, since a pseudonym names
    one person. Without one, each patient gets the pseudonym the project key derives.
    ``via`` (``"dimse"``/``"dicomweb"``) picks C-STORE or STOW-RS on a server.
    """
    # Here, not at the top: iter_folder is the remote client's too, which has no store.
    from ..access.guarded import GuardedNode
    from ..dicom.node import open_node
    from ..store import nodes as node_store
    from ..transfer.worker import WorkerConfig
    from .execute import build_pseudonymizer

    access.require(Permission.UPLOAD, action="upload", node=destination)
    # A node the user may not use at all is refused as if it did not exist (404).
    access.require_node(destination, action="upload")
    access.require_node(destination, NodeRole.DESTINATION, action="upload")
    access.require_accepting_jobs(action="upload")
    if via is not None and via not in ("dimse", "dicomweb"):
        raise InputError(f"via must be 'dimse' or 'dicomweb', not {via!r}")
    options = [str(o) for o in deid_options]
    job = {
        "pseudonymize": True,
        "deid_options": options,
        "trial_protocol_id": trial_protocol_id or None,
        "trial_protocol_name": trial_protocol_name or None,
        "project_name": project_name or None,
    }
    pseudonymizer = build_pseudonymizer(settings, job, pseudonym)
    with database.session() as session:
        spec = node_store.get_node(session, destination)
    details: dict[str, Any] = {"project": project_name or "default", "options": options}
    result = UploadResult(destination)
    with access.audited("upload", node=destination, details=details) as audit:
        staging = Path(tempfile.mkdtemp(prefix="wb-upload-"))
        try:
            config = WorkerConfig(str(staging), settings, pseudonymizer)
            with closing(open_node(spec, settings)) as live:
                caps = getattr(live, "capabilities", None)
                stow = via == "dicomweb" or (
                    via is None and caps is not None and not caps.store and caps.stow
                )
                feed = _Feed(config, result, stow, one_patient=bool(pseudonym))
                node = GuardedNode(live, access, settings)
                kwargs = {"via": via} if via and caps is not None else {}
                stored = node.store(feed(items), **kwargs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        result.stored = stored.stored
        result.warnings = stored.warnings
        for key, why in stored.failed.items():
            result.refused.append((feed.names.get(key, key), f"refused by {destination}: {why}"))
        audit.update(stored=result.stored, refused=len(result.refused))
    return result
