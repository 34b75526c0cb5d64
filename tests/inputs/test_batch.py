"""Batch files: the caps hold on what is read (unpacked size, rows, columns, cell
length), checked while reading; CSV exports cannot carry formulas."""

from __future__ import annotations

import io
import os
import resource
import threading
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from adit_workbench.jobs.batchfile import (
    MAX_CELL_CHARS,
    MAX_READ_ROWS,
    BatchFileError,
    read_table,
)
from adit_workbench.jobs.export import write_table

COLUMNS = ["PatientID", "StudyInstanceUID"]


def _xlsx(rows: list[list[str]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _bomb(megabytes: int) -> bytes:
    """A valid workbook whose shared strings unpack to ``megabytes`` MB (a few KB packed)."""
    plain = _xlsx([["PatientID"], ["1"]])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(plain)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if item.filename != "xl/sharedStrings.xml":
                dst.writestr(item, src.read(item))
        member = zipfile.ZipInfo("xl/sharedStrings.xml")
        member.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(member, "w", force_zip64=True) as handle:
            handle.write(
                b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>'
            )
            chunk = b"A" * (1 << 20)
            for _ in range(megabytes):
                handle.write(chunk)
            handle.write(b"</t></si></sst>")
    return out.getvalue()


def test_xlsx_bomb_is_refused_before_inflating() -> None:
    data = _bomb(120)
    assert len(data) < 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BatchFileError, match="unpacks to"):
        read_table(data, COLUMNS, name="bomb.xlsx")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("PatientID\n" + "1\n" * (MAX_READ_ROWS + 5), "rows"),
        ("PatientID\n" + "x" * (MAX_CELL_CHARS + 1) + "\n", "longer than"),
        ("PatientID\n" + "x" * 200_000 + "\n", "longer than"),
        ("PatientID" + ",a" * 70 + "\n1\n", "columns"),
        ('PatientID\n"unterminated\n', "malformed"),
    ],
    ids=["rows", "cell", "huge-cell", "columns", "quotes"],
)
def test_csv_caps(content: str, reason: str) -> None:
    with pytest.raises(BatchFileError, match=reason) as caught:
        read_table(content.encode(), COLUMNS, name="rows.csv")
    assert "x" * 50 not in str(caught.value)  # the reason, never the value


def test_xlsx_long_cell_is_named_not_shown() -> None:
    data = _xlsx([["PatientID"], ["y" * (MAX_CELL_CHARS + 1)]])
    with pytest.raises(BatchFileError, match="line 2: column 1 - longer than") as caught:
        read_table(data, COLUMNS, name="cells.xlsx")
    assert "yyyy" not in str(caught.value)


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    box: dict[str, BaseException] = {}

    def read() -> None:
        try:
            read_table(fifo, COLUMNS)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(box["error"], BatchFileError) and "regular" in str(box["error"])


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\tx"])
def test_csv_export_neutralizes_formulas_and_xlsx_stays_text(tmp_path: Path, cell: str) -> None:
    import pandas as pd

    frame = pd.DataFrame({"StudyDescription": [cell, "plain"], "=cmd": ["a", "b"]})
    csv_text = write_table(frame, tmp_path / "out.csv").read_text()
    for line in csv_text.splitlines():
        for field in line.split(","):
            assert not field.strip('"').startswith(("=", "+", "-", "@", "\t")), line
    write_table(frame, tmp_path / "out.xlsx")
    sheet = load_workbook(tmp_path / "out.xlsx").active
    assert sheet is not None
    assert sheet["A2"].value == cell and sheet["A2"].data_type == "s"
