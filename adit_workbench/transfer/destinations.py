"""Where a transfer delivers: a DICOM server, a folder, an AES zip archive (NIfTI files:
:mod:`.nifti`).

Each destination is a *sink* with three duties: say which (delivered) SOP Instance UIDs
it already holds, so that a re-run delivers only what is missing; take prepared
instances one at a time as they come out of the pipeline; and finish (flush a STOW-RS
batch, close the archive, run dcm2niix). Staged files live on the destination's own file
system where there is one, so that delivering a file is a rename: atomic, and free.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom import Dataset, dcmread

from ..dicom.paths import component, within
from ..errors import InputError, NodeError, PermissionDenied, TransferError
from .defaults import ARCHIVE_NAME, STAGING_PREFIX
from .layout import InstanceInfo, Placement, relative_path, sanitize

__all__ = [
    "ArchiveDestination",
    "FolderDestination",
    "ServerDestination",
    "Sink",
    "job_root",
    "new_staging",
]


class Sink(Protocol):
    """What the pipeline needs from a destination while one transfer runs."""

    where: str
    staging: Path
    failed: dict[str, str]
    #: Set by folder sinks: workers deliver there themselves (``put`` is then skipped).
    placement: Placement | None

    def existing(self) -> set[str]:
        """SOP Instance UIDs (as delivered) the destination already holds."""
        ...

    def put(self, info: InstanceInfo) -> int:
        """Deliver one staged instance; return the bytes delivered."""
        ...

    def finish(self) -> None:
        """Complete delivery (flush, close, convert); raise if it failed."""
        ...

    def abort(self) -> None:
        """Drop staged work after a failure or cancel (what was delivered stays)."""
        ...


def job_root(root: Path, folder_name: str | None) -> Path:
    """The job folder below a folder destination (its name made safe, checked inside)."""
    return within(root, sanitize(folder_name, "transfer")) if folder_name else root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_staging(parent: Path) -> Path:
    """A fresh staging folder; those of runs that died (killed, crashed) are removed."""
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.glob(f"{STAGING_PREFIX}*"):
        pid = old.name.removeprefix(STAGING_PREFIX).split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = parent / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _dcm_stems(root: Path) -> set[str]:
    """The SOP Instance UIDs below ``root``, by file name.

    A name that carries a hash (``~``: its UID had to be made safe, see
    :func:`~..dicom.paths.component`) is read for its real UID: rare, and without it
    a re-run would not recognise the instance.
    """
    found: set[str] = set()
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.endswith(".dcm") or name.startswith("."):
                continue
            found.add(name[:-4])
            if "~" in name:
                found.add(_sop_of(Path(dirpath, name)))
    return found


def _sop_of(path: Path) -> str:
    try:
        header = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(header.get("SOPInstanceUID", ""))
    except Exception:  # a foreign file: not an instance we delivered
        return ""


def _held_elsewhere(destination: Path, own: Path, patient: str) -> set[str]:
    """SOP Instance UIDs delivered for ``patient`` by other jobs into ``destination``:
    ``<destination>/<job folder>/<patient folder>/…`` (one look per job folder)."""
    folder = component(patient, "UnknownPatient")
    found: set[str] = set()
    try:
        jobs = [e for e in os.scandir(destination) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return found
    for entry in jobs:
        if entry.name.startswith((".", STAGING_PREFIX)) or Path(entry.path) == own:
            continue
        found |= _dcm_stems(Path(entry.path, folder))
    return found


# -- folder ---------------------------------------------------------------------------------
@dataclass
class FolderDestination:
    """A folder in ADIT's layout (see :mod:`.layout`); ``folder_name`` is the job folder.

    ``patient``: the PatientID the instances will carry, when known before the transfer
    (a job's pseudonym). Then an instance counts as already there when another job
    folder of this destination holds it (the same delivered SOP Instance UID) below
    that patient's folder: the same study sent twice with the same pseudonym is one
    copy, not two. Pseudonymized UIDs depend on the project's key, not the pseudonym,
    so the patient folder is part of the identity: the same study sent under another
    pseudonym is delivered again, as it must be.
    """

    path: Path
    folder_name: str | None = None
    patient: str | None = None

    def open(self, study_modalities: Iterable[str], settings: Any) -> _FolderSink:
        """The sink for one transfer."""
        root = job_root(Path(self.path), self.folder_name)
        shared = Path(self.path) if self.patient and root != Path(self.path) else None
        return _FolderSink(root, set(study_modalities), shared, self.patient)


class _FolderSink:
    def __init__(
        self,
        root: Path,
        modalities: set[str],
        shared: Path | None = None,
        patient: str | None = None,
    ) -> None:
        self.root = root
        self.modalities = modalities
        self.where = str(root)
        self.staging = new_staging(root)
        self.failed: dict[str, str] = {}
        self._made: set[Path] = set()
        self.placement: Placement | None = Placement(str(root), tuple(sorted(modalities)))
        self._shared, self._patient = shared, patient

    def existing(self) -> set[str]:
        held = _dcm_stems(self.root)
        if self._shared is not None and self._patient:
            held |= _held_elsewhere(self._shared, self.root, self._patient)
        return held

    def put(self, info: InstanceInfo) -> int:
        target = self.root / relative_path(info, self.modalities)
        if target.parent not in self._made:
            within(self.root, target.parent.relative_to(self.root))
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        os.replace(info.staged, target)  # the staged file is complete: atomic delivery
        return info.size

    def finish(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


# -- archive --------------------------------------------------------------------------------
@dataclass
class ArchiveDestination:
    """A password-protected (WinZip AES-256) zip archive in ``path``.

    Entries follow ADIT's layout below the job folder. A run writes into a copy of the
    archive and renames it over the original when done, so an interrupted run leaves
    the archive as the last complete run left it (and the re-run adds what is missing).
    """

    path: Path
    password: str
    folder_name: str | None = None
    archive_name: str | None = None

    def open(self, study_modalities: Iterable[str], settings: Any) -> _ArchiveSink:
        """The sink for one transfer."""
        if not self.password:
            raise InputError("an archive destination needs a password")
        name = self.archive_name or (
            f"{sanitize(self.folder_name)}.zip" if self.folder_name else ARCHIVE_NAME
        )
        return _ArchiveSink(
            Path(self.path) / sanitize(name), self.password, self.folder_name, study_modalities
        )


class _ArchiveSink:
    placement: Placement | None = None

    def __init__(
        self, target: Path, password: str, folder: str | None, modalities: Iterable[str]
    ) -> None:
        import pyzipper

        self.target = target
        self.where = str(target)
        self.prefix = sanitize(folder, "transfer") if folder else ""
        self.modalities = set(modalities)
        self.staging = new_staging(target.parent)
        self.failed: dict[str, str] = {}
        self.part = self.staging / "archive.zip"
        if target.exists():
            shutil.copyfile(target, self.part)
        self.zip = pyzipper.AESZipFile(
            self.part,
            "a" if target.exists() else "w",
            compression=pyzipper.ZIP_DEFLATED,
            compresslevel=1,
            encryption=pyzipper.WZ_AES,
        )
        self.zip.setpassword(password.encode())
        self.zip.setencryption(pyzipper.WZ_AES, nbits=256)

    def existing(self) -> set[str]:
        return {
            Path(n).name[:-4]
            for n in self.zip.namelist()
            if n.endswith(".dcm") and (not self.prefix or n.startswith(self.prefix + "/"))
        }

    def put(self, info: InstanceInfo) -> int:
        rel = relative_path(info, self.modalities)
        name = f"{self.prefix}/{rel}" if self.prefix else str(rel)
        self.zip.write(info.staged, arcname=name)  # streamed: one entry per instance
        os.unlink(info.staged)
        return info.size

    def finish(self) -> None:
        self.zip.close()
        os.replace(self.part, self.target)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        self.zip.close()
        shutil.rmtree(self.staging, ignore_errors=True)


# -- DICOM server ---------------------------------------------------------------------------
_END = object()


@dataclass
class ServerDestination:
    """A DICOM server: C-STORE or STOW-RS (``via="dimse"``/``"dicomweb"``, auto if None)."""

    node: Any
    via: str | None = None

    def open(self, study_modalities: Iterable[str], settings: Any) -> _ServerSink:
        """The sink for one transfer."""
        return _ServerSink(self.node, self.via, Path(tempfile.mkdtemp(prefix="wb-transfer-")))


class _ServerSink:
    placement: Placement | None = None

    """Feeds one ``node.store()`` call on a thread, so the network overlaps the workers.

    The node's own ``store`` is used (through the access layer when the node is guarded),
    so that C-STORE and STOW-RS batching, association limits and refusals behave as
    everywhere else.
    """

    def __init__(self, node: Any, via: str | None, staging: Path) -> None:
        self.node = node
        self.via = via
        self.where = str(node.name)
        self.staging = staging
        self.failed: dict[str, str] = {}
        self.study_uid = ""
        self.stored = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=32)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sent = 0
        self._ended = False

    def existing(self) -> set[str]:
        if not self.study_uid:
            return set()
        query = Dataset()
        query.StudyInstanceUID = self.study_uid
        query.SOPInstanceUID = ""
        try:
            return {str(ds.SOPInstanceUID) for ds in self.node.find("IMAGE", query)}
        except PermissionDenied:
            return set()  # a destination-only user: deliver everything, the PACS overwrites

    def _stow(self) -> bool:
        if self.via is not None:
            return str(self.via).lower() == "dicomweb"
        caps = getattr(self.node, "capabilities", None)
        return bool(caps is not None and not caps.store and caps.stow)

    def _items(self) -> Iterator[str | Dataset]:
        # C-STORE sends a path undecoded; STOW-RS batches, so it gets datasets read now.
        stow = self._stow()
        previous: str | None = None
        while True:
            item = self._queue.get()
            if previous is not None:
                Path(previous).unlink(missing_ok=True)  # sent: its successor was asked for
                previous = None
            if item is _END:
                self._ended = True
                return
            self._sent += 1
            if stow:
                ds = dcmread(item)
                Path(item).unlink(missing_ok=True)
                yield ds
            else:
                previous = item
                yield item

    def _run(self) -> None:
        try:
            kwargs = {"via": self.via} if self.via else {}
            result = self.node.store(self._items(), **kwargs)
            self.stored = result.stored
            self.failed.update(result.failed)
        except BaseException as exc:  # re-raised by finish()
            self._error = exc
            while not self._ended:  # let the producer finish, not block on a full queue
                try:
                    if self._queue.get(timeout=0.5) is _END:
                        break
                except queue.Empty:
                    continue

    def put(self, info: InstanceInfo) -> int:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wb-deliver", daemon=True)
            self._thread.start()
        if self._error is not None:
            raise self._error
        self._queue.put(info.staged)
        return info.size

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._error is not None:
            if isinstance(self._error, NodeError | TransferError):
                raise self._error
            raise TransferError(f"{self.where}: delivery failed: {self._error}") from self._error

    def abort(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join(30)
        shutil.rmtree(self.staging, ignore_errors=True)
