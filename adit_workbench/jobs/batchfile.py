"""Read batch files (CSV or Excel) into rows of text, reporting every problem at once.

Cells are read as text: an Excel text cell keeps its leading zeros, a number cell becomes
its integer text, a date cell its ISO date. Formulas are never evaluated: a formula cell
is an error (its cached value may be stale, and evaluating it is not our business).
CSV must be UTF-8 (a BOM is fine); its delimiter may be ``,``, ``;`` or a tab, as spreadsheet
programs write them.

Errors name the line (the spreadsheet's row number, header = 1), the column and the
reason, never the cell's value: batch files hold patient identifiers.

The caps hold on what is *read*, checked while reading: the file's size, an .xlsx's
unpacked size (from its zip directory, before anything is inflated: a 1 MB workbook
whose one cell unpacks to 1 GB is refused at once, and zipfile never inflates past a
member's declared size), the number of rows and columns, and each cell's length.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from ..errors import InputError
from . import defaults

__all__ = ["BatchFileError", "RawRow", "RowError", "Table", "read_table"]

MAX_SHOWN_ERRORS = 50
#: An .xlsx may unpack to at most this many bytes (all members; ADIT's files are KB).
MAX_UNPACKED_BYTES = 50 * 1024 * 1024
#: Members of an .xlsx zip (a real workbook has a dozen or two).
MAX_ZIP_MEMBERS = 1000
#: Rows read at most (the header included); a longer file is refused while reading.
MAX_READ_ROWS = defaults.HARD_MAX_ROWS + 1
#: Columns read at most (ADIT's batch files have up to six).
MAX_COLUMNS = 64
#: Longest cell (IDs, names, UIDs, dates and pseudonyms are 64 characters at most).
MAX_CELL_CHARS = 1024


@dataclass(frozen=True, order=True)
class RowError:
    """One problem of a batch file: where it is and why (no cell values)."""

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return (
            f"{where}: {self.column} - {self.reason}" if self.column else f"{where}: {self.reason}"
        )


class BatchFileError(InputError):
    """A batch file was refused; :attr:`errors` lists every problem found."""

    def __init__(self, name: str, errors: Iterable[RowError]) -> None:
        self.name = name
        self.errors: list[RowError] = sorted(set(errors))
        shown = [str(e) for e in self.errors[:MAX_SHOWN_ERRORS]]
        more = len(self.errors) - len(shown)
        text = f"batch file {name} is invalid ({len(self.errors)} problem(s)); nothing was queued:"
        text += "".join(f"\n  {line}" for line in shown)
        if more > 0:
            text += f"\n  … and {more} more"
        super().__init__(text)


@dataclass(frozen=True)
class RawRow:
    """A non-empty data row: its line number and its cells by canonical column name."""

    line: int
    cells: dict[str, str]


@dataclass
class Table:
    """What a batch file holds: canonical column names and its non-empty rows."""

    name: str
    columns: list[str]
    rows: list[RawRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def _canonical(header: str) -> str:
    return "".join(ch for ch in header.lower() if ch.isalnum())


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def read_table(
    source: str | Path | bytes | IO[bytes],
    known_columns: Sequence[str],
    *,
    name: str | None = None,
    max_bytes: int = defaults.MAX_BATCH_FILE_BYTES,
) -> Table:
    """Read a CSV or XLSX batch file; raise :class:`BatchFileError` if it cannot be read.

    ``known_columns`` are the accepted headers (matched ignoring case, spaces and ``_``);
    the returned rows use those spellings as keys. Unknown or repeated headers are
    recorded in ``Table.errors`` for the caller to judge together with the row errors.
    ``source`` given as bytes or a binary stream needs ``name`` (for the format).
    """
    data, label = _load(source, name, max_bytes)
    suffix = Path(label).suffix.lower()
    if suffix == ".csv":
        grid = _csv_grid(data, label)
    elif suffix in (".xlsx", ".xlsm"):
        grid = _xlsx_grid(data, label)
    else:
        reason = (
            "old Excel .xls files are not supported: save as .xlsx"
            if suffix == ".xls"
            else (f"unsupported file type {suffix or '(none)'}: use .csv or .xlsx")
        )
        raise BatchFileError(label, [RowError(0, "", reason)])
    return _to_table(grid, known_columns, label)


def _load(
    source: str | Path | bytes | IO[bytes], name: str | None, max_bytes: int
) -> tuple[bytes, str]:
    if isinstance(source, (str, Path)):
        from ..dicom.part10 import Malformed, read_regular  # pydicom: only for a path

        path = Path(source)
        label = name or path.name
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise BatchFileError(label, [_too_big(size, max_bytes)])
            data = read_regular(path, max_bytes)  # a FIFO is refused, never waited on
        except Malformed:
            raise BatchFileError(label, [RowError(0, "", "not a regular file")]) from None
        except OSError as exc:
            raise InputError(f"cannot read batch file {label}: {exc.strerror}") from None
        if len(data) > max_bytes:  # grew since stat()
            raise BatchFileError(label, [_too_big(len(data), max_bytes)])
    else:
        if name is None:
            raise InputError("a batch file given as bytes or a stream needs a name (.csv/.xlsx)")
        label = name
        data = source if isinstance(source, bytes) else source.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BatchFileError(label, [_too_big(len(data), max_bytes)])
    if not data.strip():
        raise BatchFileError(label, [RowError(0, "", "the file is empty")])
    return data, label


def _too_big(size: int, limit: int) -> RowError:
    return RowError(0, "", f"the file is {size / 1e6:.1f} MB; at most {limit / 1e6:.1f} MB")


def _csv_grid(data: bytes, label: str) -> list[tuple[int, list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        reason = "the file is not UTF-8 text (save it as CSV UTF-8)"
        raise BatchFileError(label, [RowError(line, "", reason)]) from None
    if "\x00" in text:
        raise BatchFileError(label, [RowError(0, "", "the file is not a text (CSV) file")])
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    grid: list[tuple[int, list[str]]] = []
    line = 1
    limits = _Limits(label)
    try:
        for row in reader:
            limits.row(line, any(cell.strip() for cell in row[MAX_COLUMNS:]))
            cells = [cell.strip() for cell in row[:MAX_COLUMNS]]
            limits.cells(line, cells)
            grid.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as exc:
        reason = (
            f"a cell is longer than {MAX_CELL_CHARS} characters"
            if "field larger" in str(exc)
            else "malformed CSV (unbalanced quotes?)"
        )
        raise BatchFileError(label, [RowError(line, "", reason)]) from None
    limits.done()
    return grid


class _Limits:
    """The row, column and cell caps, checked as rows are read."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.errors: list[RowError] = []

    def row(self, line: int, too_wide: bool) -> None:
        if line > MAX_READ_ROWS:
            reason = f"more than {MAX_READ_ROWS - 1} rows; split the file"
            raise BatchFileError(self.label, [RowError(line, "", reason)])
        if too_wide:
            self.errors.append(RowError(line, "", f"more than {MAX_COLUMNS} columns"))

    def cells(self, line: int, cells: list[str]) -> None:
        for index, cell in enumerate(cells):
            if len(cell) > MAX_CELL_CHARS:
                reason = f"longer than {MAX_CELL_CHARS} characters"
                self.errors.append(RowError(line, f"column {index + 1}", reason))
                cells[index] = ""
        if len(self.errors) > MAX_SHOWN_ERRORS:
            self.done()

    def done(self) -> None:
        if self.errors:
            raise BatchFileError(self.label, self.errors)


def _check_zip(data: bytes, label: str) -> None:
    """Refuse an .xlsx whose zip directory promises too much, before inflating any of it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise BatchFileError(label, [RowError(0, "", "not a valid .xlsx workbook")]) from None
    if len(members) > MAX_ZIP_MEMBERS:
        reason = f"not a valid .xlsx workbook ({len(members)} parts)"
        raise BatchFileError(label, [RowError(0, "", reason)])
    unpacked = sum(m.file_size for m in members)
    if unpacked > MAX_UNPACKED_BYTES:
        reason = (
            f"the workbook unpacks to {unpacked / 1e6:.0f} MB; "
            f"at most {MAX_UNPACKED_BYTES / 1e6:.0f} MB"
        )
        raise BatchFileError(label, [RowError(0, "", reason)])


def _xlsx_grid(data: bytes, label: str) -> list[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    _check_zip(data, label)
    try:
        # data_only=False: formulas come back as formulas (to be refused), never evaluated.
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError):
        raise BatchFileError(label, [RowError(0, "", "not a valid .xlsx workbook")]) from None
    try:
        sheet = book.worksheets[0]
        grid: list[tuple[int, list[str]]] = []
        header: list[str] = []
        formulas: list[RowError] = []
        limits = _Limits(label)
        for index, row in enumerate(sheet.iter_rows(max_col=MAX_COLUMNS + 1), start=1):
            beyond = [getattr(cell, "value", None) for cell in row[MAX_COLUMNS:]]
            limits.row(index, any(v not in (None, "") for v in beyond))
            texts: list[str] = []
            for col, cell in enumerate(row[:MAX_COLUMNS]):
                value = getattr(cell, "value", None)
                if getattr(cell, "data_type", None) == "f" or (
                    isinstance(value, str) and value.startswith("=") and len(value) > 1
                ):
                    column = header[col] if col < len(header) else f"column {col + 1}"
                    formulas.append(RowError(index, column, "formulas are not allowed"))
                    texts.append("")
                    continue
                texts.append(_cell_text(value))
            limits.cells(index, texts)
            if not header and any(texts):
                header = texts
            grid.append((index, texts))
    finally:
        book.close()
    limits.done()
    if formulas:
        raise BatchFileError(label, formulas)
    return grid


def _to_table(grid: list[tuple[int, list[str]]], known_columns: Sequence[str], label: str) -> Table:
    rows = [(line, cells) for line, cells in grid if any(cells)]
    if not rows:
        raise BatchFileError(label, [RowError(0, "", "the file has no rows")])
    header_line, header = rows[0]
    by_key = {_canonical(c): c for c in known_columns}
    table = Table(label, [])
    positions: dict[int, str] = {}
    for index, raw in enumerate(header):
        if not raw:
            continue
        column = by_key.get(_canonical(raw))
        if column is None:
            table.errors.append(RowError(header_line, raw[:64], "unknown column"))
        elif column in table.columns:
            table.errors.append(RowError(header_line, column, "column appears twice"))
        else:
            table.columns.append(column)
            positions[index] = column
    for line, cells in rows[1:]:
        values = {column: "" for column in table.columns}
        for index, cell in enumerate(cells):
            column = positions.get(index)
            if column is not None:
                values[column] = cell
            elif cell and index >= len(header):
                table.errors.append(RowError(line, f"column {index + 1}", "value without header"))
        if any(values.values()):
            table.rows.append(RawRow(line, values))
    return table
