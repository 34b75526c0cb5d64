"""``adit-workbench query``: options to filters, output formats, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import Dataset

from adit_workbench.cli import main
from adit_workbench.cli import query as query_cli
from adit_workbench.errors import NodeUnreachable
from adit_workbench.sandbox.synthetic import iter_datasets
from tests.dicom.test_query import FakeNode


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, archive: list[Dataset]) -> FakeNode:
    node = FakeNode(archive)
    monkeypatch.setattr(query_cli, "_resolve_node", lambda name: node)
    return node


@pytest.fixture(scope="module")
def archive() -> list[Dataset]:
    return list(iter_datasets(patients=6, studies=2, series=2, instances=2, rows=8, cols=8))


def test_table_and_summary(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "PACS", "--patient-name", "Smith, J", "--modality", "CT,MR"]) == 0
    out, err = capsys.readouterr()
    assert "SMITH^JOHN" in out and "StudyInstanceUID" in out
    assert err.startswith("2 studies on FAKE (C-FIND study root)")
    assert [c[2].ModalitiesInStudy for c in fake.calls] == ["CT", "MR"]


def test_csv_json_and_dates(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "PACS", "--study-date", "20000101-", "--format", "csv"]) == 0
    out, _ = capsys.readouterr()
    header, *rows = out.strip().splitlines()
    assert header.startswith("PatientID,PatientName,PatientBirthDate") and len(rows) == 12
    assert fake.calls[-1][2].StudyDate == "20000101-"
    assert main(["query", "PACS", "--level", "series", "--patient-id", "SYN0001",
                 "--format", "json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and set(rows[0]) >= {"SeriesInstanceUID", "Modality"}


def test_truncation_is_printed(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "PACS", "--limit", "2", "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 3 and "TRUNCATED at 2" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--study-date", "2020-01-01"],
        ["--birth-date", "19700101-"],
        ["--series-uid", "1.2.3"],  # series filter on a study query
        ["--modality", "C T"],
        ["--level", "frame"],
    ],
)
def test_bad_input_exits_2(
    fake: FakeNode, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert main(["query", "PACS", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fake.calls == []


def test_node_failure_exits_1(
    monkeypatch: pytest.MonkeyPatch, archive: list[Dataset], capsys: pytest.CaptureFixture[str]
) -> None:
    down = FakeNode(archive, fail=NodeUnreachable("FAKE", "C-FIND", "connection refused"))
    monkeypatch.setattr(query_cli, "_resolve_node", lambda name: down)
    assert main(["query", "PACS", "--patient-id", "SYN0001"]) == 1
    assert capsys.readouterr().err == "adit-workbench: FAKE: C-FIND failed: connection refused\n"


def test_end_to_end_through_the_workbench(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adit_workbench.dicom.spec import Capabilities
    from adit_workbench.sandbox.pacs import SandboxPacs
    from adit_workbench.workbench import connect

    with SandboxPacs(tmp_path / "pacs", ae_title="CLISBX") as pacs:
        pacs.seed(3, studies=2, series=1, instances=1, rows=8, cols=8)
        connect().add_server(
            "SBX", ae_title="CLISBX", host="127.0.0.1", port=pacs.port,
            capabilities=Capabilities(study_root_find=True, patient_root_find=True),
        )  # fmt: skip
        assert main(["query", "SBX", "--patient-id", "SYN0001", "--format", "csv"]) == 0
        out, err = capsys.readouterr()
        assert len(out.strip().splitlines()) == 3 and "C-FIND study root" in err
        assert main(["query", "SBX", "--level", "patient", "--patient-name", "*"]) == 0
        assert capsys.readouterr().err.startswith("3 patients on SBX (C-FIND patient root)")
        assert main(["query", "NOSUCH"]) == 2
        assert "NOSUCH" in capsys.readouterr().err
