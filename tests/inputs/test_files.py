"""The crafted corpus through every entry point that reads files: the Part-10 scanner,
the folder node (query, retrieve, store), pseudonymize, leak-scan and the sandbox
archive. Nothing written outside a root, nothing damaged written, every refusal named,
no traceback, nothing hangs on a FIFO."""

from __future__ import annotations

import resource
import threading
from pathlib import Path

import pytest
from pydicom import Dataset

from adit_workbench.deid import Profile, Pseudonymizer, pseudonymize_folder, scan_leaks
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.part10 import Malformed, Part10, Unsupported, read_checked
from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.errors import InputError
from adit_workbench.sandbox.archive import Archive
from tests.inputs import corpus
from tests.inputs.corpus import Case

CASES = corpus.cases()
REFUSED = [c for c in CASES if c.expect == "refused"]
SOUND = [c for c in CASES if c.expect == "ok"]
SECRET = b"k" * 32


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30 and len(REFUSED) >= 10


def _no_hang(func: object, *args: object) -> object:
    """Run ``func`` on a thread; fail (instead of hanging the suite) after 60 s."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = func(*args)  # type: ignore[operator]
        except BaseException as exc:  # re-raised below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), f"{getattr(func, '__name__', func)} hangs"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "file"], ids=lambda c: c.name)
def test_scanner_verdict(case: Case) -> None:
    if case.pydicom_path:
        with pytest.raises(Unsupported):
            Part10.parse(case.data)
    elif case.expect == "refused":
        with pytest.raises(Malformed) as caught:
            Part10.parse(case.data)
        assert case.reason in str(caught.value)
    elif case.expect == "ok":
        Part10.parse(case.data)
    else:
        with pytest.raises((Unsupported, Malformed)):
            Part10.parse(case.data)


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_read_checked_names_file_and_reason(tmp_path: Path, case: Case) -> None:
    (path,) = [tmp_path / c.name for c in corpus.write(tmp_path, [case])]
    with pytest.raises(Malformed) as caught:
        _no_hang(read_checked, path)
    assert str(caught.value).startswith(f"{case.name}: ") and case.reason in str(caught.value)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    corpus.write(folder)
    return folder


def test_folder_node_query_and_retrieve(hostile: Path) -> None:
    node = FolderNode(FolderSpec(name="HOSTILE", path=str(hostile)))
    query = Dataset()
    query.SOPInstanceUID = ""
    found = _no_hang(lambda: list(node.find("IMAGE", query)))
    assert len(found) == len(SOUND)  # type: ignore[arg-type]
    assert set(node.refused) == {c.name for c in REFUSED}
    for case in REFUSED:
        assert case.reason in node.refused[case.name]
    retrieved = _no_hang(lambda: list(node.retrieve("IMAGE", query)))
    assert len(retrieved) == len(SOUND)  # type: ignore[arg-type]


def test_store_to_a_folder_node_stays_inside_and_keeps_every_instance(
    hostile: Path, tmp_path: Path
) -> None:
    out = tmp_path / "store"
    out.mkdir()
    node = FolderNode(FolderSpec(name="OUT", path=str(out)))
    paths = sorted(p for p in hostile.iterdir())
    result = _no_hang(node.store, paths)
    assert result.stored == len(SOUND)  # type: ignore[union-attr]
    refused = {c.name for c in REFUSED} | {c.name for c in CASES if c.expect == "skipped"}
    assert set(result.failed) == refused  # type: ignore[union-attr]
    written = list(corpus.files_below(out))
    assert len(written) == len(SOUND)
    assert all(out.resolve() in p.resolve().parents for p in written)
    # The same instances again: recognised (same names), nothing added.
    again = node.store(p for p in paths if p.is_file() and p.name.startswith("hostile"))
    assert again.stored and len(list(corpus.files_below(out))) == len(SOUND)
    # "../a" and "_a" read alike once made safe: two files, not "1 already there".
    names = {p.name for p in written}
    assert "_a.dcm" in names and any(n.startswith("_a~") for n in names)
    # A different instance already holding the wanted name: the newcomer gets its own.
    taken = next(p for p in written if p.name == "_a.dcm")
    (taken.parent / "1.2.3.4.dcm").write_bytes(taken.read_bytes())
    assert node.store([corpus.dataset("1.2.3.4")]).stored == 1
    assert (taken.parent / "1.2.3.4~2.dcm").is_file()
    assert not (tmp_path / "escape").exists() and not Path("/tmp/abs.dcm").exists()


def test_pseudonymize_refuses_damage_and_keeps_output_inside(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    pseudonymizer = Pseudonymizer(SECRET, Profile(pseudonym="../../x"))
    report = _no_hang(pseudonymize_folder, hostile, out, pseudonymizer)
    refused = dict(report.refused)  # type: ignore[union-attr]
    assert set(refused) == {c.name for c in REFUSED}
    for case in REFUSED:
        assert case.reason in refused[case.name]
    assert len(report.written) == len(SOUND)  # type: ignore[union-attr]
    written = list(corpus.files_below(out))
    assert len(written) == len(SOUND)
    assert all(out.resolve() in p.resolve().parents for p in written)
    assert not (tmp_path / "x").exists()
    leaks = _no_hang(scan_leaks, list(corpus.files_below(hostile)), written)
    assert "fifo.dcm" in " ".join(leaks.unreadable)  # type: ignore[union-attr]


def test_sandbox_archive_by_file_and_by_bytes(hostile: Path, tmp_path: Path) -> None:
    archive = Archive(tmp_path / "sandbox")
    for case in CASES:
        path = hostile / case.name
        if case.expect == "ok":
            assert archive.files.resolve() in archive.add_file(path).resolve().parents
        else:
            with pytest.raises(InputError) as caught:
                _no_hang(archive.add_file, path)
            assert case.reason in str(caught.value)
    assert archive.count()["instances"] == len(SOUND)
    for case in REFUSED:
        if case.kind == "file":
            with pytest.raises(InputError, match="refused"):
                archive.add_dataset(corpus.dataset(), case.data)
    archive.close()
    assert all(
        (tmp_path / "sandbox").resolve() in p.resolve().parents
        for p in corpus.files_below(tmp_path / "sandbox")
    )


def test_memory_stays_bounded(hostile: Path) -> None:
    """The deep-nesting and huge-length cases cost neither stack nor memory."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    node = FolderNode(FolderSpec(name="HOSTILE", path=str(hostile)))
    for _ in range(3):
        list(node.find("IMAGE", Dataset()))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000
