"""``adit-workbench pseudonymize`` and ``leak-scan`` through :func:`adit_workbench.cli.main`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from adit_workbench.cli import main
from adit_workbench.config import Settings


@pytest.fixture
def tree(corpus: Path, tmp_path: Path) -> Path:
    src = tmp_path / "in"
    shutil.copytree(corpus, src)
    (src / "notes.txt").write_text("not DICOM")
    return src


def test_pseudonymize_and_scan(
    tree: Path, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["pseudonymize", str(tree), str(out), "--option", "retain-patient-characteristics",
                 "--trial-id", "T1", "--pseudonym", "SUBJ01", "--workers", "1"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "12 written" in text and "skipped notes.txt" in text
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == 12 and not (out / "notes.txt").exists()
    ds = pydicom.dcmread(files[0])
    assert ds.PatientID == "SUBJ01" and ds.ClinicalTrialProtocolID == "T1"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113108"]
    assert main(["leak-scan", str(tree), str(out)]) == 0
    assert "0 leak(s)" in capsys.readouterr().out


def test_leak_scan_exits_1_on_a_leak(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leak-scan", str(tree), str(tree)]) == 1
    captured = capsys.readouterr()
    assert "leak(s)" in captured.out and "identifying value(s) found" in captured.err


def test_adit_preset_and_modified_dates(tree: Path, tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "out"
    assert main(["pseudonymize", str(tree), str(out), "--preset", "adit", "--workers", "1"]) == 0
    assert main(["leak-scan", str(tree), str(out), "--ignore", "date"]) == 0
    out2 = tmp_path / "out2"
    assert main(["pseudonymize", str(tree), str(out2), "--option", "113107"]) == 0
    ds = pydicom.dcmread(next(out2.rglob("*.dcm")))
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_what_if_writes_nothing(
    tree: Path, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pseudonymize", str(tree), str(tmp_path / "out"), "--what-if"]) == 0
    text = capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    assert "remap UID" in text and "notes.txt: not DICOM" in text


@pytest.mark.parametrize(
    "args",
    [
        ["--option", "clean-everything"],
        ["--option", "retain-long-full-dates", "--option", "retain-long-modified-dates"],
        ["--pseudonym", "x" * 70],
    ],
)
def test_bad_input_exits_2(tree: Path, tmp_path: Path, settings: Settings, args: list[str]) -> None:
    assert main(["pseudonymize", str(tree), str(tmp_path / "out"), *args]) == 2


def test_bad_paths_and_secret_exit_2(tree: Path, tmp_path: Path, settings: Settings) -> None:
    assert main(["pseudonymize", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert main(["pseudonymize", str(tree), str(tree / "inside")]) == 2
    short = tmp_path / "short.key"
    short.write_text("abcd")
    assert main(["pseudonymize", str(tree), str(tmp_path / "o"), "--secret-file", str(short)]) == 2


def test_refused_instances_exit_1(
    tree: Path, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    first = next(tree.rglob("*.dcm"))
    ds = pydicom.dcmread(first)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(first)
    out = tmp_path / "out"
    assert main(["pseudonymize", str(tree), str(out), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "1 refused" in captured.out and "refused" in captured.err
    assert main(["pseudonymize", str(tree), str(tmp_path / "o2"), "--burned-in", "allow"]) == 0
