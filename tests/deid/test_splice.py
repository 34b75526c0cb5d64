"""The splicing writer gives exactly the bytes pydicom's writer would."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest

from adit_workbench.deid import Option, Profile, Pseudonymizer
from adit_workbench.deid.splice import read_source, write_spliced

from .conftest import SECRET, bundled_path
from .test_pseudonymizer import BUNDLED


@pytest.mark.parametrize(
    "options", [Option.BASIC, Option.RETAIN_UIDS | Option.RETAIN_LONG_FULL_DATES]
)
@pytest.mark.parametrize(
    "name", [*BUNDLED, "ExplVR_BigEnd.dcm", "image_dfl.dcm", "waveform_ecg.dcm", "reportsi.dcm"]
)
def test_spliced_output_equals_pydicoms(name: str, options: Option, tmp_path: Path) -> None:
    ds, data = read_source(bundled_path(name))
    twin = copy.deepcopy(ds)
    p = Pseudonymizer(SECRET, Profile(options, burned_in_policy="allow"))
    p(ds)
    p(twin)
    write_spliced(ds, data, tmp_path / "spliced.dcm")
    twin.save_as(tmp_path / "pydicom.dcm")
    assert (tmp_path / "spliced.dcm").read_bytes() == (tmp_path / "pydicom.dcm").read_bytes()


def test_spliced_synthetic(corpus_files: list[Path], tmp_path: Path) -> None:
    p = Pseudonymizer(SECRET, Profile())
    for path in corpus_files:
        ds, data = read_source(path)
        twin = p(copy.deepcopy(ds))
        p(ds)
        write_spliced(ds, data, tmp_path / "a.dcm")
        twin.save_as(tmp_path / "b.dcm")
        assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
        assert pydicom.dcmread(tmp_path / "a.dcm").PixelData == pydicom.dcmread(path).PixelData


def test_untouched_dataset_round_trips(tmp_path: Path) -> None:
    src = bundled_path("CT_small.dcm")
    ds, data = read_source(src)
    write_spliced(ds, data, tmp_path / "same.dcm")
    assert (tmp_path / "same.dcm").read_bytes() == Path(src).read_bytes()
