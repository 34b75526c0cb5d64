"""The leak scanner: silent on real output, loud on leaks planted on purpose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from adit_workbench.deid import (
    Profile,
    Pseudonymizer,
    collect_identifiers,
    mask,
    pseudonymize_folder,
    scan_leaks,
)
from adit_workbench.errors import InputError

from .conftest import SECRET

Plant = Callable[[Dataset, Dataset, Path], None]


def _in_element(original: Dataset, out: Dataset, path: Path) -> None:
    out.ImageComments = f"scan of {original.PatientName}"
    out.save_as(path)


def _in_sequence(original: Dataset, out: Dataset, path: Path) -> None:
    inner = Dataset()
    inner.CodeMeaning = str(original.OtherPatientIDs)
    outer = Dataset()
    outer.ConceptNameCodeSequence = Sequence([inner])
    out.AnatomicRegionSequence = Sequence([outer])
    out.save_as(path)


def _in_private_block(original: Dataset, out: Dataset, path: Path) -> None:
    block = out.private_block(0x0011, "LEAKY VENDOR", create=True)
    block.add_new(0x01, "LO", str(original.AccessionNumber))
    out.save_as(path)


def _in_file_meta(original: Dataset, out: Dataset, path: Path) -> None:
    out.file_meta.MediaStorageSOPInstanceUID = original.SOPInstanceUID
    out.save_as(path)


def _in_raw_bytes(original: Dataset, out: Dataset, path: Path) -> None:
    out.preamble = str(original.PatientID).encode().ljust(128, b"\0")
    out.save_as(path)


@pytest.mark.parametrize(
    ("plant", "location", "kind"),
    [
        (_in_element, "ImageComments", "name"),
        (_in_sequence, "AnatomicRegionSequence[0].ConceptNameCodeSequence[0].CodeMeaning", "id"),
        (_in_private_block, "private (0011,1001)", "id"),
        (_in_file_meta, "file meta MediaStorageSOPInstanceUID", "uid"),
        (_in_raw_bytes, "raw bytes at offset 0", "id"),
    ],
    ids=["element", "sequence", "private", "file-meta", "raw-bytes"],
)
def test_planted_leaks_are_found(
    plant: Plant, location: str, kind: str, corpus_files: list[Path], tmp_path: Path
) -> None:
    src = corpus_files[0]
    original = pydicom.dcmread(src)
    out = Pseudonymizer(SECRET, Profile())(pydicom.dcmread(src))
    path = tmp_path / "leaky.dcm"
    plant(original, out, path)
    report = scan_leaks([src], [path])
    assert not report.clean
    assert [(leak.location, leak.kind) for leak in report.leaks] == [(location, kind)]
    assert str(path) in str(report)


def test_report_masks_the_values(corpus_files: list[Path], tmp_path: Path) -> None:
    src = corpus_files[0]
    original = pydicom.dcmread(src)
    out = Pseudonymizer(SECRET, Profile())(pydicom.dcmread(src))
    _in_element(original, out, tmp_path / "x.dcm")
    text = str(scan_leaks([src], [tmp_path / "x.dcm"]))
    for part in str(original.PatientName).split("^"):
        assert part not in text
    assert mask("DOE^JOHN") == "DO******(8)"


def test_real_output_of_a_folder_is_clean(
    corpus: Path, corpus_files: list[Path], tmp_path: Path
) -> None:
    report = pseudonymize_folder(
        corpus, tmp_path / "out", Pseudonymizer(SECRET, Profile()), workers=1
    )
    assert report.ok
    outputs = sorted((tmp_path / "out").rglob("*.dcm"))
    leaks = scan_leaks(corpus_files, outputs, output_root=tmp_path / "out")
    assert leaks.clean, str(leaks)
    assert leaks.files_scanned == len(corpus_files) and leaks.values_collected > 50


def test_copied_originals_leak_everything(corpus_files: list[Path]) -> None:
    report = scan_leaks(corpus_files[:1], corpus_files[:1])
    kinds = report.by_kind()
    assert {"name", "person", "id", "date", "uid", "institution", "address"} <= set(kinds)


def test_private_values_are_collected(corpus_files: list[Path], tmp_path: Path) -> None:
    original = pydicom.dcmread(corpus_files[0])
    original.private_block(0x0013, "STUDY SITE", create=True).add_new(0x01, "LO", "Ward 7B Oakham")
    original.save_as(tmp_path / "orig.dcm")
    out = Pseudonymizer(SECRET, Profile())(pydicom.dcmread(tmp_path / "orig.dcm"))
    out.ImageComments = "seen on Ward 7B Oakham"
    out.save_as(tmp_path / "out.dcm")
    report = scan_leaks([tmp_path / "orig.dcm"], [tmp_path / "out.dcm"])
    assert [(leak.location, leak.kind) for leak in report.leaks] == [("ImageComments", "private")]


def test_file_names_are_checked(corpus: Path, corpus_files: list[Path]) -> None:
    report = scan_leaks(corpus_files[:1], corpus_files[:1], output_root=corpus)
    assert any(leak.location == "file name" for leak in report.leaks)


def test_collect_identifiers_and_kinds(corpus_files: list[Path]) -> None:
    ds = pydicom.dcmread(corpus_files[0])
    found = collect_identifiers(ds)
    assert found[str(ds.PatientID).lower()][0] == "id"
    assert found[str(ds.SOPInstanceUID).lower()][0] == "uid"
    assert ds.SOPClassUID.lower() not in found
    with pytest.raises(InputError):
        scan_leaks([], [], ignore=["colour"])


def test_ignored_kinds_are_not_reported(corpus_files: list[Path]) -> None:
    report = scan_leaks(corpus_files[:1], corpus_files[:1], ignore=["date"])
    assert "date" not in report.by_kind()
