"""The sandbox archive: Part-10 files in a folder plus a SQLite index of their attributes.

The index keeps one row per patient, study, series and instance with the instance's
matchable attributes as JSON, so that a restart does not re-read every file and a C-FIND
never opens one. One connection is shared by the SCP's threads behind a lock; WAL mode
lets another process (``status()`` from the CLI) read the counts while the server writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian

from ..dicom.part10 import Malformed, check_bytes, check_elements, read_checked
from ..dicom.paths import free_name, instance_file
from ..errors import InputError, StoreError
from .matching import LEVELS, text_attributes

__all__ = ["Archive", "StoredInstance", "check_encoded"]

INDEX_NAME = "index.sqlite3"
FILES_DIR = "files"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT PRIMARY KEY, attrs TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, patient_id TEXT NOT NULL, attrs TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, patient_id TEXT NOT NULL,
    modality TEXT, attrs TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL, study_uid TEXT NOT NULL,
    patient_id TEXT NOT NULL, sop_class_uid TEXT NOT NULL, transfer_syntax TEXT NOT NULL,
    path TEXT NOT NULL, attrs TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_studies_patient ON studies(patient_id);
CREATE INDEX IF NOT EXISTS ix_series_study ON series(study_uid);
CREATE INDEX IF NOT EXISTS ix_instances_series ON instances(series_uid);
CREATE INDEX IF NOT EXISTS ix_instances_study ON instances(study_uid);
CREATE INDEX IF NOT EXISTS ix_instances_patient ON instances(patient_id);
"""

# Study-level attributes (PS3.4 C.6.1.1.3 and the usual optional ones). Patient-level ones
# are the rest of group 0010; everything else belongs to series or instance.
_STUDY_KEYWORDS = frozenset(
    {
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
        "StudyDescription", "ReferringPhysicianName", "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy", "AdmittingDiagnosesDescription", "PatientAge",
        "PatientSize", "PatientWeight", "InstitutionName", "IssuerOfPatientID",
        "SpecificCharacterSet",
    }
)  # fmt: skip
_SERIES_KEYWORDS = frozenset(
    {
        "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate",
        "SeriesTime", "BodyPartExamined", "ProtocolName", "PerformingPhysicianName",
        "OperatorsName", "StationName", "Manufacturer", "ManufacturerModelName",
        "InstitutionName", "FrameOfReferenceUID", "Laterality", "SpecificCharacterSet",
    }
)  # fmt: skip
_PATIENT_ONLY_EXCLUDED = frozenset({"PatientAge", "PatientSize", "PatientWeight"})
_KEY_COLUMN = {"PATIENT": "patient_id", "STUDY": "study_uid", "SERIES": "series_uid"}


@dataclass(frozen=True)
class StoredInstance:
    """One archived instance, as the retrieve services need it."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path


def _level_attrs(attrs: dict[str, str]) -> tuple[dict[str, str], ...]:
    patient = {
        k: v
        for k, v in attrs.items()
        if (k.startswith("Patient") or k in ("IssuerOfPatientID", "OtherPatientIDs"))
        and k not in _PATIENT_ONLY_EXCLUDED
    }
    patient["SpecificCharacterSet"] = attrs.get("SpecificCharacterSet", "")
    study = {k: v for k, v in attrs.items() if k in _STUDY_KEYWORDS}
    series = {k: v for k, v in attrs.items() if k in _SERIES_KEYWORDS}
    return patient, study, series


class Archive:
    """Files under ``root / "files"`` and their index ``root / "index.sqlite3"``.

    Args:
        root: Folder of the archive (created if missing). If it holds files but no index
            (e.g. the index was deleted), the index is rebuilt from the files once.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.files = self.root / FILES_DIR
        self.files.mkdir(parents=True, exist_ok=True)
        index = self.root / INDEX_NAME
        fresh = not index.exists()
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(index, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"sandbox index {index} is unusable: {exc}") from exc
        if fresh and any(self.files.rglob("*.dcm")):
            self.rebuild_index()

    # -- writing -----------------------------------------------------------------------
    def add_dataset(self, ds: Dataset, encoded: bytes | None = None) -> Path:
        """Archive one instance, replacing any earlier one with the same SOP Instance UID.

        Args:
            ds: The dataset (with file meta when ``encoded`` is None).
            encoded: Its Part-10 bytes if already at hand (a C-STORE), so that the pixel
                data is written as received instead of re-encoded.

        Returns:
            The path of the archived file.
        """
        if encoded is not None:
            check_encoded(encoded)
        try:
            study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
            ds.SOPClassUID  # noqa: B018 - required below; fail early with a clear message
        except AttributeError as exc:
            raise InputError(f"not archivable, missing {exc.args[0]!s}") from exc
        path = self._place(study, series, sop)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        if encoded is not None:
            tmp.write_bytes(encoded)
        else:
            ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
        self._index(ds, path)
        return path

    def add_file(self, path: str | Path) -> Path:
        """Copy a Part-10 file into the archive and index it.

        Raises:
            InputError: If the file is not DICOM or lacks the hierarchy UIDs.
        """
        src = Path(path)
        try:
            ds = read_checked(src, stop_before_pixels=True)
        except Malformed as exc:
            raise InputError(f"refused {exc}") from None
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise InputError(f"{src.name}: not a readable DICOM file ({exc})") from exc
        try:
            study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
            ds.SOPClassUID  # noqa: B018
        except AttributeError as exc:
            raise InputError(f"{src.name}: not archivable, missing {exc.args[0]!s}") from exc
        dest = self._place(study, series, sop)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.resolve() != dest.resolve():
            tmp = dest.with_name(f".{dest.name}.{threading.get_ident()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        self._index(ds, dest)
        return dest

    def _place(self, study: object, series: object, sop: object) -> Path:
        """Where an instance is archived: its UIDs made safe, below ``files``.

        A different instance already holding the (safe) name – two crafted UIDs that
        read alike – gets a name of its own; the same instance replaces its file.
        """
        wanted = instance_file(self.files, study, series, sop)
        target, _already = free_name(wanted, self._holds(str(sop)))
        return target

    def _holds(self, sop: str) -> Callable[[Path], bool]:
        def same(path: Path) -> bool:
            rel = str(path.relative_to(self.files))
            row = self._rows("SELECT sop_uid FROM instances WHERE path = ?", (rel,))
            return not row or row[0][0] == sop  # an unindexed file is ours to replace

        return same

    def _index(self, ds: Dataset, path: Path) -> None:
        attrs = text_attributes(ds)
        patient, study, series = _level_attrs(attrs)
        pid = attrs.get("PatientID", "")
        rel = str(path.relative_to(self.files))
        meta = getattr(ds, "file_meta", None)
        syntax = str(getattr(meta, "TransferSyntaxUID", "") or ExplicitVRLittleEndian)
        with self._lock, self._transaction():
            # First instance of a level defines that level's record, as in most PACS.
            self._db.execute(
                "INSERT OR IGNORE INTO patients VALUES (?, ?)", (pid, json.dumps(patient))
            )
            self._db.execute(
                "INSERT OR IGNORE INTO studies VALUES (?, ?, ?)",
                (attrs["StudyInstanceUID"], pid, json.dumps(study)),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO series VALUES (?, ?, ?, ?, ?)",
                (
                    attrs["SeriesInstanceUID"],
                    attrs["StudyInstanceUID"],
                    pid,
                    attrs.get("Modality", ""),
                    json.dumps(series),
                ),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    attrs["SOPInstanceUID"],
                    attrs["SeriesInstanceUID"],
                    attrs["StudyInstanceUID"],
                    pid,
                    attrs["SOPClassUID"],
                    syntax,
                    rel,
                    json.dumps(attrs),
                ),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"sandbox index write failed: {exc}") from exc

    def rebuild_index(self) -> int:
        """Re-read every archived file into an emptied index; returns the instance count."""
        with self._lock:
            for table in ("instances", "series", "studies", "patients"):
                self._db.execute(f"DELETE FROM {table}")
        count = 0
        for path in sorted(self.files.rglob("*.dcm")):
            try:
                ds = read_checked(path, stop_before_pixels=True)
                self._index(ds, path)
                count += 1
            except (InvalidDicomError, Malformed, OSError, ValueError, AttributeError, KeyError):
                continue  # a stray file in the folder must not stop the server
        return count

    # -- reading -----------------------------------------------------------------------
    def count(self) -> dict[str, int]:
        """Numbers of patients, studies, series and instances."""
        with self._lock:
            return {
                name: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for name, table in (
                    ("patients", "patients"),
                    ("studies", "studies"),
                    ("series", "series"),
                    ("instances", "instances"),
                )
            }

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def records(
        self, level: str, keys: dict[str, list[str]] | None = None
    ) -> Iterator[dict[str, str]]:
        """Yield the query record of every entity at ``level`` (ancestors' attributes merged).

        Args:
            level: ``PATIENT``, ``STUDY``, ``SERIES`` or ``IMAGE``.
            keys: Optional exact prefilter on ``patient_id``/``study_uid``/``series_uid``/
                ``sop_uid`` columns (lists of allowed values) to spare a full scan.
        """
        if level not in LEVELS:
            raise InputError(f"unknown query level {level!r}")
        where, args = _where(keys or {}, level)
        if level == "PATIENT":
            counts = self._counts("patient_id")
            for pid, attrs in self._rows(f"SELECT patient_id, attrs FROM patients{where}", args):
                rec = json.loads(attrs)
                n_studies, n_series, n_instances = counts.get(pid, (0, 0, 0))
                rec["NumberOfPatientRelatedStudies"] = str(n_studies)
                rec["NumberOfPatientRelatedSeries"] = str(n_series)
                rec["NumberOfPatientRelatedInstances"] = str(n_instances)
                yield rec
            return
        patients = {pid: json.loads(a) for pid, a in self._rows("SELECT * FROM patients")}
        if level == "STUDY":
            counts = self._counts("study_uid")
            modalities: dict[str, set[str]] = {}
            for uid, modality in self._rows("SELECT study_uid, modality FROM series"):
                modalities.setdefault(uid, set()).add(modality)
            sql = f"SELECT study_uid, patient_id, attrs FROM studies{where}"
            for uid, pid, attrs in self._rows(sql, args):
                rec = {**patients.get(pid, {}), **json.loads(attrs)}
                _, n_series, n_instances = counts.get(uid, (0, 0, 0))
                rec["ModalitiesInStudy"] = "\\".join(sorted(modalities.get(uid, set()) - {""}))
                rec["NumberOfStudyRelatedSeries"] = str(n_series)
                rec["NumberOfStudyRelatedInstances"] = str(n_instances)
                yield rec
            return
        studies = {
            uid: json.loads(a) for uid, a in self._rows("SELECT study_uid, attrs FROM studies")
        }
        if level == "SERIES":
            counts = self._counts("series_uid")
            sql = f"SELECT study_uid, patient_id, attrs, series_uid FROM series{where}"
            for study_uid, pid, attrs, uid in self._rows(sql, args):
                rec = {**patients.get(pid, {}), **studies.get(study_uid, {}), **json.loads(attrs)}
                rec["NumberOfSeriesRelatedInstances"] = str(counts.get(uid, (0, 0, 0))[2])
                yield rec
            return
        sql = f"SELECT study_uid, patient_id, attrs FROM instances{where}"
        for study_uid, pid, attrs in self._rows(sql, args):
            yield {**patients.get(pid, {}), **studies.get(study_uid, {}), **json.loads(attrs)}

    def _counts(self, column: str) -> dict[str, tuple[int, int, int]]:
        sql = (
            f"SELECT {column}, COUNT(DISTINCT study_uid), COUNT(DISTINCT series_uid), COUNT(*) "
            f"FROM instances GROUP BY {column}"
        )
        return {row[0]: (row[1], row[2], row[3]) for row in self._rows(sql)}

    def instances_under(self, level: str, uids: list[str]) -> list[StoredInstance]:
        """The instances belonging to the given patients/studies/series/instances."""
        column = _KEY_COLUMN.get(level, "sop_uid")
        out: list[StoredInstance] = []
        for start in range(0, len(uids), 500):  # SQLite caps bound parameters
            chunk = uids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT sop_uid, sop_class_uid, transfer_syntax, path FROM instances "
                f"WHERE {column} IN ({marks}) ORDER BY study_uid, series_uid, path"
            )
            out.extend(
                StoredInstance(sop, cls, syntax, self.files / rel)
                for sop, cls, syntax, rel in self._rows(sql, tuple(chunk))
            )
        return out

    def close(self) -> None:
        """Close the index connection."""
        with self._lock:
            self._db.close()


def check_encoded(encoded: bytes) -> None:
    """Refuse (:class:`InputError`) an instance's Part-10 bytes that are cut, hold
    impossible lengths or nest too deep: never archived, never served."""
    try:
        if check_bytes(encoded) is None:  # left to pydicom (big endian …): check its read
            check_elements(pydicom.dcmread(io.BytesIO(encoded), force=True))
    except Malformed as exc:
        raise InputError(f"refused a received instance: {exc}") from None
    except RecursionError:
        raise InputError("refused a received instance: sequences nested too deep") from None


def _where(keys: dict[str, list[str]], level: str) -> tuple[str, tuple[str, ...]]:
    allowed = {
        "PATIENT": ("patient_id",),
        "STUDY": ("patient_id", "study_uid"),
        "SERIES": ("patient_id", "study_uid", "series_uid"),
        "IMAGE": ("patient_id", "study_uid", "series_uid", "sop_uid"),
    }[level]
    clauses: list[str] = []
    args: list[str] = []
    for column, values in keys.items():
        if column in allowed and values and len(values) <= 500:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)
