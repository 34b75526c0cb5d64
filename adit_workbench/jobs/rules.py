"""ADIT's batch-file rules: columns, per-cell checks, cross-row checks and row limits.

:func:`parse_batch_query` and :func:`parse_batch_transfer` return the work items of a
valid file or raise :class:`~.batchfile.BatchFileError` listing every problem; nothing is
queued from a file with any problem. Reasons never quote the cell (PHI).

Batch transfer merges the rows of one study into one item (ADIT bug #15: series of a
study pseudonymized apart lose their links), refuses one study under two patients, one
patient with two pseudonyms and one pseudonym for two patients. A batch-query export is
accepted as it is: its extra columns are ignored and rows whose query failed are skipped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

from ..dicom.filters import DATE_GRAMMAR, parse_period
from ..errors import InputError
from .batchfile import BatchFileError, RowError, Table, read_table

__all__ = [
    "BATCH_QUERY_COLUMNS",
    "BATCH_TRANSFER_COLUMNS",
    "QueryItem",
    "TransferItem",
    "parse_batch_query",
    "parse_batch_transfer",
    "parse_date",
]

BATCH_QUERY_COLUMNS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "AccessionNumber",
    "From",
    "Until",
    "Modality",
    "StudyDescription",
    "SeriesDescription",
    "SeriesNumber",
    "Pseudonym",
)
BATCH_TRANSFER_COLUMNS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Pseudonym")
#: Columns of a batch-query export that a batch transfer file may carry and ignores.
EXPORT_EXTRA_COLUMNS = (
    "PatientName",
    "BirthDate",
    "ModalitiesInStudy",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "NumberOfStudyRelatedInstances",
    "AccessionNumber",
    "SeriesDescription",
    "SeriesNumber",
    "Line",
    "Status",
    "Message",
)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")
_INTEGER = re.compile(r"^[+-]?\d{1,12}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE_HELP = f"expected {DATE_GRAMMAR}"


@dataclass(frozen=True)
class QueryItem:
    """One batch-query row, validated: what to ask the source."""

    lines: tuple[int, ...]
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    accession_number: str = ""
    date_from: str = ""
    date_until: str = ""
    modalities: tuple[str, ...] = ()
    study_description: str = ""
    series_description: str = ""
    series_numbers: tuple[str, ...] = ()
    pseudonym: str = ""

    def filters(self) -> dict[str, object]:
        """The query-layer filters of this row (study level)."""
        study_date = None
        if self.date_from or self.date_until:
            study_date = (self.date_from or None, self.date_until or None)
        return {
            k: v
            for k, v in {
                "patient_id": self.patient_id,
                "patient_name": self.patient_name,
                "patient_birth_date": self.patient_birth_date,
                "accession_number": self.accession_number,
                "study_date": study_date,
                "study_description": self.study_description,
            }.items()
            if v
        }


@dataclass(frozen=True)
class TransferItem:
    """One study to transfer (the merged rows of a batch-transfer file)."""

    lines: tuple[int, ...]
    patient_id: str
    study_uid: str
    series_uids: tuple[str, ...] = ()
    pseudonym: str = ""


def parse_date(text: str) -> date | None:
    """The first day ``text`` stands for in the one date grammar, or None."""
    try:
        return parse_period(text)[0]
    except InputError:
        return None


class _Checker:
    """Per-cell checks that collect errors instead of raising."""

    def __init__(self, table: Table) -> None:
        self.errors: list[RowError] = list(table.errors)

    def fail(self, line: int, column: str, reason: str) -> None:
        self.errors.append(RowError(line, column, reason))

    def text(
        self, line: int, column: str, value: str, *, max_len: int = 64, wildcards: bool = False
    ) -> str:
        if not value:
            return ""
        if len(value) > max_len:
            self.fail(line, column, f"longer than {max_len} characters")
        if "\\" in value:
            self.fail(line, column, "backslash is not allowed")
        if _CONTROL.search(value):
            self.fail(line, column, "control characters are not allowed")
        if not wildcards and ("*" in value or "?" in value):
            self.fail(line, column, "wildcards (* or ?) are not allowed")
        return value

    def date(self, line: int, column: str, value: str, *, end: bool = False) -> str:
        """A day (or a month or year: its first day, its last with ``end``)."""
        if not value:
            return ""
        try:
            first, last = parse_period(value)
        except InputError:
            self.fail(line, column, f"{value[:40]!r} is not a date ({_DATE_HELP})")
            return ""
        if column == "PatientBirthDate" and first != last:
            self.fail(line, column, f"{value[:40]!r} is not one day")
            return ""
        return (last if end else first).strftime("%Y%m%d")

    def uid(self, line: int, column: str, value: str) -> str:
        if value and (len(value) > 64 or not _UID.match(value)):
            self.fail(line, column, "not a valid UID (digits and dots, at most 64)")
        return value

    def require_columns(self, table: Table, columns: tuple[str, ...]) -> None:
        for column in columns:
            if column not in table.columns:
                self.fail(1, column, "required column is missing")

    def limit(self, count: int, limit: int | None) -> None:
        if limit is not None and count > limit:
            self.fail(0, "", f"{count} rows; at most {limit} are allowed for your account")


def _same_patient_rules(
    check: _Checker, rows: list[tuple[int, str, str]], *, pseudonym_column: str = "Pseudonym"
) -> None:
    """One pseudonym per patient and one patient per pseudonym, across rows."""
    by_patient: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    by_pseudonym: dict[str, set[str]] = defaultdict(set)
    first_line: dict[str, int] = {}
    for line, patient, pseudonym in rows:
        if patient:
            by_patient[patient][pseudonym].append(line)
        if pseudonym and patient:
            by_pseudonym[pseudonym].add(patient)
            first_line.setdefault(pseudonym, line)
    for variants in by_patient.values():
        if len(variants) > 1:
            lines = sorted(line for group in variants.values() for line in group)
            for line in lines:
                check.fail(
                    line,
                    pseudonym_column,
                    f"the same PatientID has different pseudonyms (lines {_lines(lines)})",
                )
    for pseudonym, patients in by_pseudonym.items():
        if len(patients) > 1:
            lines = sorted(line for line, _, p in rows if p == pseudonym)
            for line in lines:
                check.fail(
                    line,
                    pseudonym_column,
                    f"the same pseudonym is given to different PatientIDs (lines {_lines(lines)})",
                )


def _lines(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:10])
    return shown + (", …" if len(lines) > 10 else "")


def parse_batch_query(
    source: str | Path | bytes | IO[bytes],
    *,
    name: str | None = None,
    max_rows: int | None = None,
) -> list[QueryItem]:
    """Validate a batch-query file (ADIT's columns and rules); one item per row.

    Raises :class:`BatchFileError` with every problem (line, column, reason).
    """
    table = read_table(source, BATCH_QUERY_COLUMNS, name=name)
    check = _Checker(table)
    if not table.columns:
        check.fail(1, "", "no known column; expected some of " + ", ".join(BATCH_QUERY_COLUMNS))
    if not table.rows:
        check.fail(0, "", "the file has a header but no data rows")
    check.limit(len(table.rows), max_rows)
    items: list[QueryItem] = []
    for row in table.rows:
        line, c = row.line, row.cells
        get = c.get
        pid = check.text(line, "PatientID", get("PatientID", ""))
        name_ = check.text(line, "PatientName", get("PatientName", ""), max_len=324)
        if name_ and "," in name_:
            last, _, first = name_.partition(",")
            name_ = f"{last.strip()}^{first.strip()}"
        birth = check.date(line, "PatientBirthDate", get("PatientBirthDate", ""))
        accession = check.text(line, "AccessionNumber", get("AccessionNumber", ""))
        start = check.date(line, "From", get("From", ""))
        end = check.date(line, "Until", get("Until", ""), end=True)
        if start and end and start > end:
            check.fail(line, "Until", "Until is before From")
        modalities: list[str] = []
        for part in filter(None, (m.strip().upper() for m in get("Modality", "").split(","))):
            if not _MODALITY.match(part):
                check.fail(line, "Modality", "a modality is letters or digits (e.g. CT, MR)")
            elif part not in modalities:
                modalities.append(part)
        numbers: list[str] = []
        for part in filter(None, (n.strip() for n in get("SeriesNumber", "").split(","))):
            if not _INTEGER.match(part):
                check.fail(line, "SeriesNumber", "series numbers are integers (comma-separated)")
            else:
                numbers.append(str(int(part)))
        study_desc = check.text(
            line, "StudyDescription", get("StudyDescription", ""), wildcards=True
        )
        series_desc = check.text(
            line, "SeriesDescription", get("SeriesDescription", ""), wildcards=True
        )
        pseudonym = check.text(line, "Pseudonym", get("Pseudonym", ""))
        if not accession and not modalities:
            check.fail(line, "Modality", "missing Modality (needed without AccessionNumber)")
        if not get("PatientID") and not (get("PatientName") and get("PatientBirthDate")):
            check.fail(
                line,
                "PatientID",
                "a patient is identified by PatientID, or by "
                "PatientName and PatientBirthDate together",
            )
        items.append(
            QueryItem(
                (line,),
                pid,
                name_,
                birth,
                accession,
                start,
                end,
                tuple(modalities),
                study_desc,
                series_desc,
                tuple(numbers),
                pseudonym,
            )
        )
    _same_patient_rules(check, [(r.lines[0], r.patient_id, r.pseudonym) for r in items])
    if check.errors:
        raise BatchFileError(table.name, check.errors)
    return items


def parse_batch_transfer(
    source: str | Path | bytes | IO[bytes],
    *,
    name: str | None = None,
    max_rows: int | None = None,
    pseudonym_required: bool = True,
) -> list[TransferItem]:
    """Validate a batch-transfer file; rows of one study are merged into one item.

    ``pseudonym_required`` is False only for users allowed to transfer unpseudonymized.
    Raises :class:`BatchFileError` with every problem (line, column, reason).
    """
    table = read_table(source, BATCH_TRANSFER_COLUMNS + EXPORT_EXTRA_COLUMNS, name=name)
    check = _Checker(table)
    check.require_columns(table, ("PatientID", "StudyInstanceUID"))
    if pseudonym_required and "Pseudonym" not in table.columns:
        check.fail(
            1, "Pseudonym", "required column is missing (you may only transfer pseudonymized)"
        )
    rows = [r for r in table.rows if not _query_found_nothing(r.cells)]
    if not rows and not check.errors:
        check.fail(0, "", "the file has a header but no data rows")
    check.limit(len(rows), max_rows)
    merged: dict[str, _Study] = {}
    patient_of_study: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    triples: list[tuple[int, str, str]] = []
    for row in rows:
        line, get = row.line, row.cells.get
        pid = check.text(line, "PatientID", get("PatientID", ""))
        study = check.uid(line, "StudyInstanceUID", get("StudyInstanceUID", ""))
        series = check.uid(line, "SeriesInstanceUID", get("SeriesInstanceUID", ""))
        pseudonym = check.text(line, "Pseudonym", get("Pseudonym", ""))
        if "PatientID" in table.columns and not pid:
            check.fail(line, "PatientID", "a value is required")
        if "StudyInstanceUID" in table.columns and not study:
            check.fail(line, "StudyInstanceUID", "a value is required")
        if pseudonym_required and "Pseudonym" in table.columns and not pseudonym:
            check.fail(
                line, "Pseudonym", "a value is required (you may only transfer pseudonymized)"
            )
        if not study:
            continue
        patient_of_study[study][pid].append(line)
        triples.append((line, pid, pseudonym))
        entry = merged.setdefault(study, _Study(pid, pseudonym))
        entry.lines.append(line)
        if not series:
            entry.whole = True
        elif series not in entry.series:
            entry.series.append(series)
    for patients in patient_of_study.values():
        if len(patients) > 1:
            lines = sorted(n for group in patients.values() for n in group)
            for line in lines:
                check.fail(
                    line,
                    "StudyInstanceUID",
                    f"the same study is listed under different PatientIDs (lines {_lines(lines)})",
                )
    _same_patient_rules(check, triples)
    if check.errors:
        raise BatchFileError(table.name, check.errors)
    return [
        TransferItem(
            tuple(sorted(e.lines)),
            e.patient_id,
            uid,
            () if e.whole else tuple(e.series),
            e.pseudonym,
        )
        for uid, e in merged.items()
    ]


@dataclass
class _Study:
    """Rows of one study, being merged."""

    patient_id: str
    pseudonym: str
    lines: list[int] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    whole: bool = False


_FAILED = frozenset({"FAILURE", "FAILED", "CANCELED"})


def _query_found_nothing(cells: dict[str, str]) -> bool:
    """A row of a batch-query export whose query failed or found no study."""
    status = cells.get("Status", "").upper()
    return bool(status) and (status in _FAILED or not cells.get("StudyInstanceUID"))
