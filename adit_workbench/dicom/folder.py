"""A local folder of DICOM files as a node: echo, probe and find over the files' headers.

Find reads every file's header (``stop_before_pixels``) on each call: simple and correct
for the folders a researcher uploads or exports (thousands of files, not millions). The
matching follows C-FIND's rules closely enough for the query layer: universal matching for
empty keys, ``*``/``?`` wildcards, value lists (UIDs), ``from-until`` ranges for dates
and times, case-insensitive person names.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from ..errors import InputError, NodeError, NodeUnreachable
from .node import LEVEL_KEYS, NodeBase, QueryLevel, QueryRoot
from .part10 import Malformed, read_checked
from .query import QueryMixin
from .spec import Capabilities, FolderSpec

if TYPE_CHECKING:
    from ..config import Settings
    from .storage import StoreItem, StoreResult

__all__ = ["FolderNode", "iter_headers", "matches"]

_LEVELS = (QueryLevel.PATIENT, QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE)
# Attributes a C-FIND SCP computes per entity rather than reading from one file.
_COMPUTED = {
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
    "NumberOfStudyRelatedSeries",
    "NumberOfSeriesRelatedInstances",
    "NumberOfPatientRelatedStudies",
}
_RANGE_VRS = {"DA", "TM", "DT"}
log = logging.getLogger(__name__)


def iter_headers(
    root: Path, refused: dict[str, str] | None = None
) -> Iterator[tuple[Path, Dataset]]:
    """``(path, header)`` of every sound DICOM file below ``root``.

    Files that are not DICOM are skipped quietly (a folder may hold a README). Files
    that are refused – not regular (a FIFO would block), cut, with impossible lengths
    or nesting too deep (see :func:`~.part10.read_checked`) – are logged, one line
    naming the file and the reason, and recorded in ``refused`` (relative path →
    reason) when given: never matched, so never retrieved or counted as delivered.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = Path(dirpath, filename)
            try:
                header = read_checked(path, stop_before_pixels=True)
            except Malformed as exc:
                reason = str(exc).removeprefix(f"{filename}: ")
                _refuse(root, path, reason, refused)
                continue
            except (InvalidDicomError, ValueError, EOFError, TypeError, KeyError):
                continue
            except OSError as exc:
                _refuse(root, path, f"unreadable: {exc.strerror or type(exc).__name__}", refused)
                continue
            if "SOPInstanceUID" in header:  # else not an instance (a DICOMDIR, say)
                yield path, header


def _refuse(root: Path, path: Path, reason: str, refused: dict[str, str] | None) -> None:
    rel = str(path.relative_to(root))
    log.warning("folder %s: refused %s: %s", root, rel, reason)
    if refused is not None:
        refused[rel] = reason


def _values(value: object) -> list[str]:
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def _match_one(vr: str, wanted: str, actual: list[str]) -> bool:
    if vr in _RANGE_VRS and "-" in wanted:
        low, _, high = wanted.partition("-")
        return any((not low or a >= low) and (not high or a[: len(high)] <= high) for a in actual)
    if vr == "PN":
        wanted, actual = wanted.upper(), [a.upper() for a in actual]
    if "*" in wanted or "?" in wanted:
        return any(fnmatch.fnmatchcase(a, wanted) for a in actual)
    return wanted in actual


def matches(header: Dataset, query: Dataset) -> bool:
    """Whether ``header`` matches every non-empty key of ``query`` (computed keys aside)."""
    for element in query:
        keyword = element.keyword
        if keyword in _COMPUTED or keyword == "QueryRetrieveLevel" or element.VR == "SQ":
            continue
        wanted = _values(element.value)
        if not wanted or wanted == [""]:
            continue
        actual = _values(header.get(keyword, "")) if keyword else []
        if not any(_match_one(element.VR, w, actual) for w in wanted):
            return False
    return True


class FolderNode(NodeBase, QueryMixin):
    """A folder of DICOM files (a source from an upload, or a destination)."""

    def __init__(self, spec: FolderSpec, settings: Settings | None = None) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.path = Path(spec.path)
        #: Files the last search refused (relative path → reason; see :func:`iter_headers`).
        self.refused: dict[str, str] = {}

    def echo(self) -> None:
        """Check that the folder exists and is writable."""
        if not self.path.is_dir():
            raise NodeUnreachable(self.name, "ECHO", "folder does not exist")
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise NodeError(self.name, "ECHO", "folder is not writable")

    def probe(self) -> Capabilities:
        """Folders can be searched if readable and stored into if writable."""
        readable = self.path.is_dir() and os.access(self.path, os.R_OK | os.X_OK)
        writable = readable and os.access(self.path, os.W_OK)
        found = "ok" if readable else "folder missing or unreadable"
        return Capabilities(
            echo=readable,
            patient_root_find=readable,
            study_root_find=readable,
            store=writable,
            probed_at=datetime.now(UTC),
            details={
                "echo": found,
                "patient_root_find": found,
                "study_root_find": found,
                "store": "ok" if writable else "folder is not writable",
            },
        )

    def find(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        limit: int | None = None,
        root: QueryRoot | str | None = None,
    ) -> Iterator[Dataset]:
        """Matches at ``level``, one per entity, with the query's keys filled in."""
        level = QueryLevel.parse(level)
        if limit is not None and limit < 0:
            raise InputError("limit must be None or >= 0")
        if not self.path.is_dir():
            raise NodeUnreachable(self.name, "FIND", "folder does not exist")
        return self._find(level, query, limit)

    def _find(self, level: QueryLevel, query: Dataset, limit: int | None) -> Iterator[Dataset]:
        if limit == 0:
            return
        key = LEVEL_KEYS[level]
        groups: dict[str, list[Dataset]] = {}
        self.refused = {}
        for _path, header in iter_headers(self.path, self.refused):
            if matches(header, query):
                groups.setdefault(str(header.get(key, "")), []).append(header)
        count = 0
        for headers in groups.values():
            result = self._result(level, query, headers)
            if result is None:
                continue
            yield result
            count += 1
            if limit is not None and count >= limit:
                return

    def _result(self, level: QueryLevel, query: Dataset, headers: list[Dataset]) -> Dataset | None:
        first = headers[0]
        modalities = sorted({str(h.get("Modality", "")) for h in headers} - {""})
        wanted_modalities = _values(query.get("ModalitiesInStudy", ""))
        if (
            wanted_modalities
            and wanted_modalities != [""]
            and not any(_match_one("CS", w, modalities) for w in wanted_modalities)
        ):
            return None
        result = Dataset()
        result.QueryRetrieveLevel = level.value
        for upper in _LEVELS[: _LEVELS.index(level) + 1]:
            keyword = LEVEL_KEYS[upper]
            if keyword in first:
                result[keyword] = first[keyword]
        for element in query:
            keyword = element.keyword
            if keyword in result or keyword == "QueryRetrieveLevel":
                continue
            if keyword == "ModalitiesInStudy":
                result.ModalitiesInStudy = modalities
            elif keyword in ("NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances"):
                setattr(result, keyword, len(headers))
            elif keyword == "NumberOfStudyRelatedSeries":
                result.NumberOfStudyRelatedSeries = len(
                    {str(h.get("SeriesInstanceUID", "")) for h in headers}
                )
            elif keyword == "NumberOfPatientRelatedStudies":
                result.NumberOfPatientRelatedStudies = len(
                    {str(h.get("StudyInstanceUID", "")) for h in headers}
                )
            elif keyword in first:
                result[element.tag] = first[element.tag]
            else:
                result[element.tag] = element
        return result

    # -- streams ---------------------------------------------------------------------
    def retrieve(
        self, level: QueryLevel | str, query: Dataset, *, root: QueryRoot | str | None = None
    ) -> Iterator[Dataset]:
        """The matching files, read in full (see :mod:`.retrieve`)."""
        from .retrieve import iter_folder  # retrieve imports this module

        return iter_folder(self, level, query)

    def store(self, items: Iterable[StoreItem]) -> StoreResult:
        """Write datasets or files into the folder (see :mod:`.storage`)."""
        from .storage import store_folder

        return store_folder(self, items)
