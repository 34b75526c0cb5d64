"""Batch files: a corpus of bad files, each refused with a precise message, and good ones
read as text (leading zeros kept), merged per study, and round-tripped from an export."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from adit_workbench.jobs import BatchFileError, parse_batch_query, parse_batch_transfer
from adit_workbench.jobs.batchfile import RowError

UID_A = "1.2.826.0.1.3680043.8.498.1"
UID_B = "1.2.826.0.1.3680043.8.498.2"
SER_1 = "1.2.826.0.1.3680043.8.498.1.1"
SER_2 = "1.2.826.0.1.3680043.8.498.1.2"


def csv(text: str) -> tuple[bytes, str]:
    return text.encode("utf-8"), "file.csv"


def xlsx(rows: list[list[Any]], *, formula_at: tuple[int, int] | None = None) -> tuple[bytes, str]:
    book = Workbook()
    ws = book.active
    assert ws is not None
    for row in rows:
        ws.append(row)
    if formula_at:
        ws.cell(row=formula_at[0], column=formula_at[1], value='=A2&"1"')
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue(), "file.xlsx"


Q_HEAD = "PatientID,PatientName,PatientBirthDate,AccessionNumber,From,Until,Modality,Pseudonym\n"
T_HEAD = "PatientID,StudyInstanceUID,SeriesInstanceUID,Pseudonym\n"

#: (id, kind, file, expected problems as (line, column, reason fragment)).
BAD: list[tuple[str, str, Callable[[], tuple[bytes, str]], list[tuple[int, str, str]]]] = [
    ("empty", "q", lambda: (b"", "e.csv"), [(0, "", "empty")]),
    ("blank lines only", "q", lambda: csv("\n\n  \n"), [(0, "", "empty")]),
    ("header only", "q", lambda: csv(Q_HEAD), [(0, "", "no data rows")]),
    ("wrong suffix", "q", lambda: (b"PatientID\n1\n", "file.txt"), [(0, "", "unsupported")]),
    ("old xls", "q", lambda: (b"\xd0\xcf\x11\xe0", "file.xls"), [(0, "", ".xls")]),
    ("not a workbook", "q", lambda: (b"PK\x03\x04garbage", "file.xlsx"), [(0, "", "not a valid")]),
    ("binary csv", "q", lambda: (b"Patient\x00ID\n", "file.csv"), [(0, "", "not a text")]),
    (
        "latin-1 csv",
        "q",
        lambda: ("PatientID,PatientName\n1,Müller\n".encode("latin-1"), "f.csv"),
        [(2, "", "not UTF-8")],
    ),
    (
        "oversized",
        "q",
        lambda: (b"PatientID\n" + b"1\n" * 3_000_000, "big.csv"),
        [(0, "", "at most")],
    ),
    ("unbalanced quote", "q", lambda: csv('PatientID,Modality\n"1,CT\n'), [(2, "", "malformed")]),
    (
        "unknown column",
        "q",
        lambda: csv("PatientID,Modalty\n1,CT\n"),
        [(1, "Modalty", "unknown column")],
    ),
    (
        "duplicate column",
        "q",
        lambda: csv("PatientID,PatientID,Modality\n1,1,CT\n"),
        [(1, "PatientID", "twice")],
    ),
    ("no known column", "q", lambda: csv("Foo,Bar\n1,2\n"), [(1, "", "no known column")]),
    (
        "bad birth date",
        "q",
        lambda: csv(Q_HEAD + "1,,1990-13-01,,,,CT,\n"),
        [(2, "PatientBirthDate", "'1990-13-01' is not a date (expected YYYY-MM-DD")],
    ),
    (
        "bad from date",
        "q",
        lambda: csv(Q_HEAD + "1,,,,yesterday,,CT,\n"),
        [(2, "From", "'yesterday' is not a date")],
    ),
    (
        "until before from",
        "q",
        lambda: csv(Q_HEAD + "1,,,,2021-01-02,2021-01-01,CT,\n"),
        [(2, "Until", "before From")],
    ),
    (
        "wildcard in id",
        "q",
        lambda: csv(Q_HEAD + "10*,,,,,,CT,\n"),
        [(2, "PatientID", "wildcards")],
    ),
    (
        "wildcard in name",
        "q",
        lambda: csv(Q_HEAD + ",Doe?,1990-01-01,,,,CT,\n"),
        [(2, "PatientName", "wildcards")],
    ),
    (
        "backslash in pseudonym",
        "q",
        lambda: csv(Q_HEAD + "1,,,,,,CT,A\\B\n"),
        [(2, "Pseudonym", "backslash")],
    ),
    (
        "too long id",
        "q",
        lambda: csv(Q_HEAD + "1" * 65 + ",,,,,,CT,\n"),
        [(2, "PatientID", "longer than 64")],
    ),
    (
        "no modality no accession",
        "q",
        lambda: csv(Q_HEAD + "1,,,,,,,\n"),
        [(2, "Modality", "missing Modality")],
    ),
    (
        "bad modality",
        "q",
        lambda: csv(Q_HEAD + '1,,,,,,"CT,M-R",\n'),
        [(2, "Modality", "letters or digits")],
    ),
    (
        "patient not identifiable",
        "q",
        lambda: csv(Q_HEAD + ",Doe,,,,,CT,\n"),
        [(2, "PatientID", "identified by PatientID")],
    ),
    (
        "bad series number",
        "q",
        lambda: csv("PatientID,Modality,SeriesNumber\n1,CT,2a\n"),
        [(2, "SeriesNumber", "integers")],
    ),
    (
        "query: patient with two pseudonyms",
        "q",
        lambda: csv(Q_HEAD + "1,,,,,,CT,P1\n1,,,,,,MR,P2\n"),
        [(2, "Pseudonym", "different pseudonyms"), (3, "Pseudonym", "different pseudonyms")],
    ),
    (
        "control character",
        "q",
        lambda: csv("PatientID,Modality\n1\x07,CT\n"),
        [(2, "PatientID", "control characters")],
    ),
    (
        "formula cell",
        "q",
        lambda: xlsx([["PatientID", "Modality"], ["1", "CT"]], formula_at=(2, 1)),
        [(2, "PatientID", "formulas are not allowed")],
    ),
    (
        "too many rows",
        "q",
        lambda: csv("PatientID,Modality\n" + "1,CT\n" * 1001),
        [(0, "", "at most 1000")],
    ),
    (
        "value without header",
        "q",
        lambda: csv("PatientID,Modality\n1,CT,extra\n"),
        [(2, "column 3", "without header")],
    ),
    (
        "transfer: missing columns",
        "t",
        lambda: csv("PatientID,Pseudonym\n1,P\n"),
        [(1, "StudyInstanceUID", "required column")],
    ),
    (
        "transfer: missing pseudonym column",
        "t",
        lambda: csv(f"PatientID,StudyInstanceUID\n1,{UID_A}\n"),
        [(1, "Pseudonym", "only transfer pseudonymized")],
    ),
    (
        "transfer: empty pseudonym",
        "t",
        lambda: csv(T_HEAD + f"1,{UID_A},,\n"),
        [(2, "Pseudonym", "a value is required")],
    ),
    (
        "transfer: bad uid",
        "t",
        lambda: csv(T_HEAD + "1,1.2.abc,,P\n"),
        [(2, "StudyInstanceUID", "not a valid UID")],
    ),
    (
        "transfer: bad series uid",
        "t",
        lambda: csv(T_HEAD + f"1,{UID_A},1..2,P\n"),
        [(2, "SeriesInstanceUID", "not a valid UID")],
    ),
    (
        "transfer: empty study",
        "t",
        lambda: csv(T_HEAD + "1,,,P\n"),
        [(2, "StudyInstanceUID", "a value is required")],
    ),
    (
        "transfer: one study under two patients",
        "t",
        lambda: csv(T_HEAD + f"1,{UID_A},,P1\n2,{UID_A},,P2\n"),
        [(2, "StudyInstanceUID", "different PatientIDs"), (3, "StudyInstanceUID", "different")],
    ),
    (
        "transfer: one patient two pseudonyms",
        "t",
        lambda: csv(T_HEAD + f"1,{UID_A},,P1\n1,{UID_B},,P2\n"),
        [(2, "Pseudonym", "different pseudonyms"), (3, "Pseudonym", "different pseudonyms")],
    ),
    (
        "transfer: one pseudonym two patients",
        "t",
        lambda: csv(T_HEAD + f"1,{UID_A},,P1\n2,{UID_B},,P1\n"),
        [(2, "Pseudonym", "different PatientIDs"), (3, "Pseudonym", "different PatientIDs")],
    ),
    (
        "transfer: too many rows",
        "t",
        lambda: csv(T_HEAD + "".join(f"{n},1.2.{n},,P{n}\n" for n in range(501))),
        [(0, "", "at most 500")],
    ),
]


@pytest.mark.parametrize(
    ("kind", "make", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_file_is_refused_precisely(
    kind: str, make: Callable[[], tuple[bytes, str]], expected: list[tuple[int, str, str]]
) -> None:
    data, name = make()
    parse = parse_batch_query if kind == "q" else parse_batch_transfer
    limit = 1000 if kind == "q" else 500
    with pytest.raises(BatchFileError) as caught:
        parse(data, name=name, max_rows=limit)
    errors = caught.value.errors
    for line, column, fragment in expected:
        assert any(
            e.line == line and e.column == column and fragment in e.reason for e in errors
        ), (line, column, fragment, errors)
    assert "nothing was queued" in str(caught.value)


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 30


def test_every_problem_is_reported_at_once() -> None:
    text = Q_HEAD + "10*,,,,,,CT,\n2,,1990-99-99,,,,,\n3,,,,2021-01-02,2021-01-01,CT,\n"
    with pytest.raises(BatchFileError) as caught:
        parse_batch_query(text.encode(), name="q.csv")
    found = {(e.line, e.column) for e in caught.value.errors}
    assert {(2, "PatientID"), (3, "PatientBirthDate"), (3, "Modality"), (4, "Until")} <= found


def test_messages_carry_no_cell_values() -> None:
    secret_id, secret_name = "PHI-4711", "Secretname"
    text = f"PatientID,PatientName,Modality\n{secret_id}*,{secret_name}?,CT\n"
    with pytest.raises(BatchFileError) as caught:
        parse_batch_query(text.encode(), name="q.csv")
    assert secret_id not in str(caught.value) and secret_name not in str(caught.value)


def test_excel_cells_are_text_and_leading_zeros_survive() -> None:
    data, name = xlsx(
        [
            ["PatientID", "PatientBirthDate", "Modality", "SeriesNumber", "Pseudonym"],
            ["000123", "1990-01-31", "ct", 3, "SUBJ-01"],
        ]
    )
    [item] = parse_batch_query(data, name=name)
    assert item.patient_id == "000123"
    assert item.patient_birth_date == "19900131"
    assert item.modalities == ("CT",)
    assert item.series_numbers == ("3",)


def test_csv_with_semicolons_bom_and_comma_names() -> None:
    text = '\ufeffPatientName;PatientBirthDate;Modality\n"Doe, John";31.01.1990;CT,MR\n'
    [item] = parse_batch_query(text.encode(), name="q.csv")
    assert item.patient_name == "Doe^John"
    assert item.modalities == ("CT", "MR")
    assert item.filters()["patient_birth_date"] == "19900131"


def test_rows_of_one_study_merge_into_one_task(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        T_HEAD + f"1,{UID_A},{SER_1},P1\n\n1,{UID_A},{SER_2},P1\n1,{UID_A},{SER_1},P1\n"
        f"2,{UID_B},,P2\n2,{UID_B},{SER_1},P2\n"
    )
    items = {i.study_uid: i for i in parse_batch_transfer(path)}
    assert items[UID_A].series_uids == (SER_1, SER_2)
    assert items[UID_A].lines == (2, 4, 5)
    assert items[UID_B].series_uids == ()  # one row wants the whole study
    assert items[UID_B].pseudonym == "P2"


def test_unpseudonymized_rows_allowed_with_the_permission() -> None:
    data, name = csv(f"PatientID,StudyInstanceUID\n1,{UID_A}\n")
    [item] = parse_batch_transfer(data, name=name, pseudonym_required=False)
    assert item.pseudonym == ""


def test_row_error_text() -> None:
    assert str(RowError(3, "From", "bad")) == "line 3: From - bad"
    assert str(RowError(0, "", "empty")) == "file: empty"
