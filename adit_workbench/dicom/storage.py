"""Store streams: send instances to a node with C-STORE, STOW-RS, or into a folder.

Each takes an iterable of Datasets or Part-10 file paths (paths are sent without being
decoded where the protocol allows) and returns a :class:`StoreResult`. A refused
instance is recorded, not raised, so that one odd object does not stop a study; a node
that cannot be reached or drops the connection raises as everywhere else.
"""

from __future__ import annotations

import errno
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import Dataset, dcmread, dcmwrite
from pydicom.errors import InvalidDicomError

from ..errors import InputError, NodeError, TransferError
from .association import AssociationKind, lost_association_error
from .part10 import Malformed, read_checked
from .paths import UnsafePath, free_name, instance_file
from .status import Category, category, describe

if TYPE_CHECKING:
    from .dicomweb import DicomWebNode
    from .dimse import DimseNode
    from .folder import FolderNode

__all__ = ["STOW_BATCH", "StoreItem", "StoreResult", "store_cstore", "store_folder", "store_stow"]

StoreItem = Dataset | str | os.PathLike[str]

#: Instances per STOW-RS request.
STOW_BATCH = 20


@dataclass
class StoreResult:
    """What a store did: counts, and the reason per refused SOP Instance UID."""

    node: str
    stored: int = 0
    warnings: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.failed

    def __repr__(self) -> str:
        from .display import text_block

        head = f"StoreResult {self.node}: {self.stored} stored, {len(self.failed)} refused"
        head += f", {self.warnings} with warnings" if self.warnings else ""
        return text_block(head, (f"{uid}: {why}" for uid, why in self.failed.items()),
                          max_lines=11)  # fmt: skip

    def _repr_html_(self) -> str:
        from .display import html_table

        title = f"{self.node}: {self.stored} stored, {len(self.failed)} refused"
        return html_table(("SOP Instance UID", "why refused"), self.failed.items(),
                          title=title, warn=bool(self.failed), total=len(self.failed))  # fmt: skip

    def raise_for_failures(self) -> StoreResult:
        """Raise :class:`~adit_workbench.errors.TransferError` if anything was refused."""
        if self.failed:
            reasons = sorted(set(self.failed.values()))
            raise TransferError(
                f"{self.node}: {len(self.failed)} of {len(self.failed) + self.stored} "
                f"instances were refused ({'; '.join(reasons[:3])})"
            )
        return self


def _dataset(item: StoreItem) -> Dataset:
    return item if isinstance(item, Dataset) else dcmread(item)


def _sop_uid(item: StoreItem) -> str:
    """The SOP Instance UID of an item, or its file name if the file is unreadable."""
    if isinstance(item, Dataset):
        return str(item.get("SOPInstanceUID", ""))
    try:
        header = dcmread(item, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except (OSError, ValueError, EOFError):
        return Path(item).name
    return str(header.get("SOPInstanceUID", "")) or Path(item).name


# -- C-STORE ---------------------------------------------------------------------------
def store_cstore(node: DimseNode, items: Iterable[StoreItem]) -> StoreResult:
    """C-STORE each item over one pooled association (paths are sent undecoded)."""
    result = StoreResult(node.name)
    operation = "C-STORE"
    with node.pool.lease(AssociationKind.STORE, operation) as pooled:
        for item in items:
            source: str | Path | Dataset = item if isinstance(item, Dataset) else Path(item)
            try:
                status = pooled.assoc.send_c_store(source, msg_id=pooled.next_message_id())
            except ValueError as exc:
                # No accepted context for this SOP class / transfer syntax pair.
                result.failed[_sop_uid(item)] = f"not accepted: {str(exc)[:80]}"
                continue
            except (OSError, AttributeError, EOFError) as exc:
                result.failed[_sop_uid(item)] = f"unreadable: {type(exc).__name__}"
                continue
            if not status:
                raise lost_association_error(node.name, operation, 0.0, node.settings.dimse_timeout)
            kind = category(int(status.Status))
            if kind is Category.SUCCESS:
                result.stored += 1
            elif kind is Category.WARNING:
                result.stored += 1
                result.warnings += 1
            else:
                result.failed[_sop_uid(item)] = describe(int(status.Status))
    return result


# -- STOW-RS ---------------------------------------------------------------------------
def _batches(items: Iterable[StoreItem], size: int) -> Iterator[list[Dataset]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield [_dataset(item) for item in batch]


def store_stow(node: DicomWebNode, items: Iterable[StoreItem]) -> StoreResult:
    """STOW-RS in batches of :data:`STOW_BATCH`; reads the server's per-instance answer."""
    result = StoreResult(node.name)
    for batch in _batches(items, STOW_BATCH):
        answer = node.call("STOW-RS", node.client.store_instances, batch)
        for item in answer.get("ReferencedSOPSequence", []):
            result.stored += 1
            if "WarningReason" in item:
                result.warnings += 1
        for item in answer.get("FailedSOPSequence", []):
            uid = str(item.get("ReferencedSOPInstanceUID", ""))
            reason = item.get("FailureReason")
            result.failed[uid] = f"failure reason {reason}" if reason is not None else "refused"
    return result


# -- folder ----------------------------------------------------------------------------
def folder_path(root: Path, ds: Dataset) -> Path:
    """``<root>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``: UIDs only (made safe), no PHI."""
    return instance_file(
        root, ds.get("StudyInstanceUID", ""), ds.get("SeriesInstanceUID", ""), ds.SOPInstanceUID
    )


def _holds(sop_uid: str) -> Callable[[Path], bool]:
    def same(path: Path) -> bool:
        try:
            header = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except Exception:  # a foreign or broken file is not this instance
            return False
        return str(header.get("SOPInstanceUID", "")) == sop_uid

    return same


def _folder_item(item: StoreItem) -> Dataset:
    """An item for a folder: a path is checked by the scanner first (never a FIFO, never
    a truncated or malformed file)."""
    if isinstance(item, Dataset):
        return item
    return read_checked(item)


def store_folder(node: FolderNode, items: Iterable[StoreItem]) -> StoreResult:
    """Write each instance as a Part-10 file; a reader never sees a half-written file.

    A refused item (unreadable, malformed, no SOP Instance UID) is recorded in
    ``failed`` under its UID or file name, never written. An instance whose (safe) name
    is taken by a different instance is written under a distinct name.
    """
    result = StoreResult(node.name)
    node.echo()
    for item in items:
        try:
            ds = _folder_item(item)
        except (Malformed, InputError, OSError, ValueError, EOFError, RecursionError) as exc:
            result.failed[_label(item)] = f"refused: {exc}"
            continue
        except InvalidDicomError:
            result.failed[_label(item)] = "refused: not a DICOM file"
            continue
        if "SOPInstanceUID" not in ds:
            result.failed[_label(item)] = "refused: no SOPInstanceUID"
            continue
        sop = str(ds.SOPInstanceUID)
        try:
            target, _already = free_name(folder_path(node.path, ds), _holds(sop))
            _write_atomically(target, ds)
        except UnsafePath as exc:
            result.failed[sop] = f"refused: {exc}"
            continue
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # every further file would fail the same way
                raise NodeError(node.name, "WRITE", "no space left on device") from exc
            result.failed[str(ds.SOPInstanceUID)] = f"not written: {type(exc).__name__}"
            continue
        except (ValueError, AttributeError) as exc:  # not encodable as Part-10
            result.failed[str(ds.SOPInstanceUID)] = f"not written: {type(exc).__name__}"
            continue
        result.stored += 1
    return result


def _label(item: StoreItem) -> str:
    if isinstance(item, Dataset):
        return str(item.get("SOPInstanceUID", "")) or "(dataset)"
    return Path(item).name


def _write_atomically(target: Path, ds: Dataset) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            dcmwrite(out, ds, enforce_file_format=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
