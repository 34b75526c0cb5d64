"""Transfer from a folder of crafted files: damaged files never delivered nor counted,
every path below the destination, the layout informative after pseudonymization."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread

from adit_workbench.deid import Profile, Pseudonymizer
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.part10 import read_checked
from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.transfer import transfer_study
from adit_workbench.transfer.destinations import ArchiveDestination
from tests.inputs import corpus

SECRET = b"s" * 32


def _in_study(cases: list[corpus.Case]) -> int:
    """Sound cases whose StudyInstanceUID is the corpus' study."""
    return sum(
        1
        for c in cases
        if c.expect == "ok" and dcmread(io.BytesIO(c.data)).StudyInstanceUID == corpus.STUDY
    )


@pytest.mark.parametrize("pseudonymize", ["", "adit", "basic"])
def test_transfer_from_a_hostile_folder(
    tmp_path: Path, pseudonymize: str, settings: object
) -> None:
    cases = corpus.write(tmp_path / "in")
    source = FolderNode(FolderSpec(name="IN", path=str(tmp_path / "in")))
    out = tmp_path / "out"
    out.mkdir()
    profile = Profile.adit("../../SUBJ") if pseudonymize == "adit" else Profile(pseudonym="CON")
    pseudonymizer = Pseudonymizer(SECRET, profile) if pseudonymize else None
    result = transfer_study(
        source,
        out,
        corpus.STUDY,
        pseudonymizer=pseudonymizer,
        folder_name="../../job",
        settings=settings,
        workers=1,
    )
    expected = _in_study(cases)
    assert result.delivered == result.expected == expected, result.message
    refused = sum(1 for c in cases if c.expect == "refused")
    assert f"{refused} file(s) in the source refused (big_endian_cut.dcm: " in result.message
    written = list(corpus.files_below(out))
    assert len(written) == expected
    for path in written:
        assert out.resolve() in path.resolve().parents
        read_checked(path)  # every delivered file is whole
    assert not (tmp_path / "job").exists() and not (tmp_path / "SUBJ").exists()
    if pseudonymize:
        folders = {p.parent.relative_to(out) for p in written}
        study_folder = {f.parts[2] for f in folders}
        # Shifted date (not 00000000), the modality, and a series folder with the number
        # and something better than "Undefined".
        assert all(not s.startswith("00000000") and s.endswith("-CT") for s in study_folder), (
            study_folder
        )
        assert all(not f.parts[3].endswith("Undefined") for f in folders), folders


def test_archive_destination_entries_stay_inside(tmp_path: Path, settings: object) -> None:
    corpus.write(tmp_path / "in")
    source = FolderNode(FolderSpec(name="IN", path=str(tmp_path / "in")))
    target = ArchiveDestination(tmp_path / "out", "pw", folder_name="../x", archive_name="../a.zip")
    (tmp_path / "out").mkdir()
    result = transfer_study(source, target, corpus.STUDY, settings=settings, workers=1)
    assert result.delivered == result.expected
    import pyzipper

    (archive,) = list((tmp_path / "out").glob("*.zip"))
    with pyzipper.AESZipFile(archive) as zf:
        names = zf.namelist()
    assert names and all(not n.startswith("/") and ".." not in n.split("/") for n in names)
