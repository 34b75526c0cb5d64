"""The jobs CLI end to end on the embedded defaults (SQLite, inline runner) and the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from adit_workbench.cli import _common, main
from adit_workbench.config import Settings
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.workbench import connect


@pytest.fixture
def cli(settings: Settings, pacs: SandboxPacs, tmp_path: Path) -> Iterator[Path]:
    """An embedded workbench with nodes SANDBOX and OUT; yields the OUT folder."""
    _common.reset()
    out = tmp_path / "out"
    out.mkdir()
    wb = connect(settings)
    wb.add_server("SANDBOX", ae_title="SANDBOX", host="127.0.0.1", port=pacs.port)
    wb.add_folder("OUT", out)
    wb.close()
    yield out
    _common.reset()


def test_batch_query_then_transfer_then_list_and_show(
    cli: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = tmp_path / "q.csv"
    queries.write_text("PatientID,Modality,Pseudonym\nSYN0001,CT,S1\nNOPE,CT,S9\n")
    assert main(["batch-query", str(queries), "--from", "SANDBOX", "--wait"]) == 0
    out, err = capsys.readouterr()
    job_id = int(out.strip())
    assert "WARNING" in err and "Some tasks have warnings" in err
    export = tmp_path / "found.csv"
    assert main(["jobs", "export", str(job_id), str(export)]) == 0
    capsys.readouterr()
    code = main(["batch-transfer", str(export), "--from", "SANDBOX", "--to", "OUT", "--wait"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "SUCCESS" in err
    assert len(list(cli.rglob("*.dcm"))) == 6
    assert main(["jobs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "batch_query" in listing and "batch_transfer" in listing
    assert main(["jobs", "show", str(job_id)]) == 0
    assert "No studies found." in capsys.readouterr().out


def test_errors_are_one_line_with_exit_codes(
    cli: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("PatientID,Modality\n12*,CT\n")
    assert main(["batch-query", str(bad), "--from", "SANDBOX"]) == 2
    assert "line 2: PatientID - wildcards" in capsys.readouterr().err
    assert main(["jobs", "cancel", "999"]) == 2
    assert "no job 999" in capsys.readouterr().err
    filters = tmp_path / "f.json"
    filters.write_text(json.dumps([{"mode": "exclude", "modality": "SR"}]))
    args = ["mass-transfer", "--from", "SANDBOX", "--to", "OUT", "--start", "2020-01-01",
            "--end", "2020-01-02", "--filters", str(filters)]  # fmt: skip
    assert main(args) == 2
    assert "at least one include" in capsys.readouterr().err
    assert main(["worker", "--burst"]) == 1
    assert "ADIT_WB_REDIS_URL" in capsys.readouterr().err
