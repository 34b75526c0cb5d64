"""Keyed consistency across runs and processes; safety in threads and process pools."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest

from adit_workbench.config import Settings
from adit_workbench.deid import Profile, Pseudonymizer, pseudonymize_folder

from .conftest import OTHER_SECRET, SECRET


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.dcm"))}


def _ids(root: Path) -> set[str]:
    found = set()
    for path in root.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        found |= {ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
    return found


def test_same_secret_same_output_in_a_separate_process(
    corpus: Path, tmp_path: Path, settings: Settings
) -> None:
    key_file = tmp_path / "project.key"
    key_file.write_text(SECRET.hex() + "\n")
    code = (
        "import sys; from adit_workbench.cli import main; "
        f"sys.exit(main(['pseudonymize', {str(corpus)!r}, {str(tmp_path / 'sub')!r}, "
        f"'--secret-file', {str(key_file)!r}, '--workers', '1']))"
    )
    env = {**os.environ, "ADIT_WB_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    profile = Profile.from_settings(settings)
    pseudonymize_folder(corpus, tmp_path / "here", Pseudonymizer(SECRET, profile), workers=1)
    assert _tree(tmp_path / "sub") == _tree(tmp_path / "here")  # byte for byte
    other = Pseudonymizer(OTHER_SECRET, profile)
    pseudonymize_folder(corpus, tmp_path / "other", other, workers=1)
    assert not _ids(tmp_path / "other") & _ids(tmp_path / "here")


def test_uids_link_across_files_series_and_studies(corpus_files: list[Path]) -> None:
    p = Pseudonymizer(SECRET, Profile())
    by_study: dict[str, set[str]] = {}
    for path in corpus_files:
        original = pydicom.dcmread(path)
        out = p(pydicom.dcmread(path))
        by_study.setdefault(original.StudyInstanceUID, set()).add(out.StudyInstanceUID)
        assert out.PatientID == p.pseudonym(original.PatientID)
    assert all(len(v) == 1 for v in by_study.values())


def test_thread_safe(corpus_files: list[Path]) -> None:
    p = Pseudonymizer(SECRET, Profile())
    datasets = [pydicom.dcmread(f) for f in corpus_files] * 4
    expected = [p(copy.deepcopy(ds)) for ds in datasets]
    fresh = Pseudonymizer(SECRET, Profile())  # empty cache: threads race to fill it
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda ds: fresh(copy.deepcopy(ds)), datasets))
    assert results == expected


def test_process_pool_gives_the_same_bytes(corpus: Path, tmp_path: Path) -> None:
    p = Pseudonymizer(SECRET, Profile())
    clone = pickle.loads(pickle.dumps(p))
    assert clone.uid("1.2.3") == p.uid("1.2.3") and clone.profile == p.profile
    one = pseudonymize_folder(corpus, tmp_path / "one", p, workers=1)
    two = pseudonymize_folder(corpus, tmp_path / "two", p, workers=2)
    assert one.written == two.written and len(one.written) == 12
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_output_structure_mirrors_input_without_identifiers(corpus: Path, tmp_path: Path) -> None:
    p = Pseudonymizer(SECRET, Profile())
    pseudonymize_folder(corpus, tmp_path / "out", p, workers=1)
    for path in corpus.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        rel = path.relative_to(corpus)
        expected = Path(p.pseudonym(ds.PatientID), p.uid(ds.StudyInstanceUID),
                        p.uid(ds.SeriesInstanceUID), p.uid(ds.SOPInstanceUID) + ".dcm")  # fmt: skip
        assert rel.parts[0] == ds.PatientID
        assert (tmp_path / "out" / expected).is_file()


@pytest.mark.parametrize("workers", [1, 2])
def test_folder_rejects_output_inside_input(corpus: Path, workers: int) -> None:
    from adit_workbench.errors import InputError

    with pytest.raises(InputError):
        pseudonymize_folder(corpus, corpus / "out", Pseudonymizer(SECRET), workers=workers)
