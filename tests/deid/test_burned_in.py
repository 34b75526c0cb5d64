"""Burned-in annotation guard: refuse (default), warn or allow; refusals are reported."""

from __future__ import annotations

import logging
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from adit_workbench.config import BurnedInPolicy
from adit_workbench.deid import BurnedInRefused, Profile, Pseudonymizer, pseudonymize_folder

from .conftest import SECRET


def _ds(corpus_files: list[Path], modality: str, flag: str | None) -> Dataset:
    ds = pydicom.dcmread(corpus_files[0])
    ds.Modality = modality
    if flag is not None:
        ds.BurnedInAnnotation = flag
    return ds


@pytest.mark.parametrize(
    ("modality", "flag", "risky"),
    [("CT", "YES", True), ("US", None, True), ("SC", None, True), ("US", "NO", False),
     ("CT", None, False), ("XA", None, True)],
)  # fmt: skip
def test_risk_and_refusal(
    corpus_files: list[Path], modality: str, flag: str | None, risky: bool
) -> None:
    ds = _ds(corpus_files, modality, flag)
    assert Pseudonymizer.burned_in_risk(ds) is risky
    p = Pseudonymizer(SECRET, Profile())
    if risky:
        with pytest.raises(BurnedInRefused):
            p(ds)
    else:
        assert p(ds).PatientIdentityRemoved == "YES"


def test_warn_logs_and_allow_is_quiet(
    corpus_files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="adit_workbench.deid"):
        Pseudonymizer(SECRET, Profile(burned_in_policy=BurnedInPolicy.WARN))(
            _ds(corpus_files, "US", None)
        )
        assert any("burned-in" in r.getMessage() for r in caplog.records)
        caplog.clear()
        Pseudonymizer(SECRET, Profile(burned_in_policy=BurnedInPolicy.ALLOW))(
            _ds(corpus_files, "US", None)
        )
        assert not caplog.records


def test_folder_reports_refused_instances(corpus_files: list[Path], tmp_path: Path) -> None:
    src = tmp_path / "in"
    for i, modality in enumerate(["CT", "US", "OT"]):
        ds = _ds(corpus_files, modality, None)
        ds.SOPInstanceUID = f"1.2.3.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        (src / f"s{i}").mkdir(parents=True)
        ds.save_as(src / f"s{i}" / "x.dcm")
    refused = pseudonymize_folder(src, tmp_path / "out", Pseudonymizer(SECRET), workers=1)
    assert not refused.ok
    assert [name for name, _ in refused.refused] == ["s1/x.dcm", "s2/x.dcm"]
    assert len(refused.written) == 1 and "refused s1/x.dcm" in str(refused)
    warn = Pseudonymizer(SECRET, Profile(burned_in_policy="warn"))
    warned = pseudonymize_folder(src, tmp_path / "out2", warn, workers=1)
    assert warned.ok and warned.warned == ["s1/x.dcm", "s2/x.dcm"] and len(warned.written) == 3
