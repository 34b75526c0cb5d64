"""Every object a notebook user meets shows itself in text and HTML within one screen."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from adit_workbench.access import Access, Identity, IdentitySource, sign_in
from adit_workbench.access.guarded import GuardedNode
from adit_workbench.config import Settings
from adit_workbench.deid import (
    Profile,
    Pseudonymizer,
    explain,
    pseudonymize_folder,
    scan_leaks,
)
from adit_workbench.deid.folder import FolderReport
from adit_workbench.deid.leaks import Leak, LeakReport
from adit_workbench.dicom.display import MAX_HTML, MAX_LINES
from adit_workbench.dicom.filters import Level
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.images import Picture, Preview, Volume, volume_from
from adit_workbench.dicom.results import Instance, Patient, Results, Series, Study
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.dicom.storage import StoreResult
from adit_workbench.jobs.export import BatchQueryResults
from adit_workbench.remote import RemoteJobHandle, RemoteJobManager, RemoteNode
from adit_workbench.remote import results as remote_results
from adit_workbench.remote.client import ServiceClient
from adit_workbench.sandbox.synthetic import generate, iter_datasets
from adit_workbench.store import Database
from adit_workbench.store.jobs import BatchQueryResult, Job, Task

SECRET = b"repr-test-secret-0123456789abcdef"


def check_screen(obj: Any) -> tuple[str, str]:
    """Text and HTML are not empty and fit one screen; returns both."""
    text = repr(obj)
    page = obj._repr_html_()
    assert text.strip(), type(obj)
    assert page.strip() and "<" in page, type(obj)
    assert len(text.splitlines()) <= MAX_LINES, (type(obj), len(text.splitlines()))
    assert len(text) <= MAX_HTML, (type(obj), len(text))
    assert len(page) <= MAX_HTML + 200, (type(obj), len(page))
    return text, page


@pytest.fixture(scope="module")
def instance() -> Dataset:
    return next(iter_datasets(patients=1, series=1, instances=1, rows=8, cols=8))


def test_query_results_and_their_items(instance: Dataset) -> None:
    study = Study.from_dataset(instance)
    for item in (
        Patient.from_dataset(instance),
        study,
        Series.from_dataset(instance),
        Instance.from_dataset(instance),
    ):
        text, page = check_screen(item)
        assert "\n" in text and len(item.line()) < 200  # a block alone, a line in a list
    text, page = check_screen(study)
    assert "CT ABDOMEN" in text and study.study_uid in page
    many = Results([study] * 500, Level.STUDY, truncated=True, limit=500, node_name="PACS")
    text, page = check_screen(many)
    assert text.startswith("500 studies on PACS - TRUNCATED") and "more" in text.splitlines()[-1]
    assert "TRUNCATED" in page and "more" in page
    check_screen(Results([], Level.SERIES, node_name="PACS"))


def test_explanation_shows_changed_attributes_first(instance: Dataset) -> None:
    explanation = explain(instance, Pseudonymizer(SECRET, Profile()))
    text, page = check_screen(explanation)
    assert "ExplainRow(" not in text and text.startswith("Explanation: ")
    first = text.splitlines()[2]
    assert "keep" not in first.split()  # changed rows come first
    assert str(instance.PatientName) not in text + page
    assert ">remap UID<" in page and ">keep<" not in page  # 47 changed fill the table


def test_explain_tells_why_an_instance_would_be_refused(instance: Dataset, tmp_path: Path) -> None:
    ultrasound = copy.deepcopy(instance)
    ultrasound.Modality = "US"
    explanation = explain(ultrasound, Pseudonymizer(SECRET, Profile()))
    assert explanation.refused is not None and "modality US" in explanation.refused
    assert len(explanation) > 10  # and what would happen were it allowed
    text, page = check_screen(explanation)
    assert "REFUSED: BurnedInAnnotation is absent" in text and "REFUSED" in page
    ultrasound.BurnedInAnnotation = "YES"
    warned = explain(ultrasound, Pseudonymizer(SECRET, Profile(burned_in_policy="warn")))
    assert warned.refused is None and "YES" in (warned.warning or "")
    assert explain(instance, Pseudonymizer(SECRET, Profile())).refused is None
    path = tmp_path / "us.dcm"
    ultrasound.save_as(path, enforce_file_format=True)
    assert "YES" in (Pseudonymizer(SECRET).explain(str(path)).refused or "")  # a file works too


def test_folder_and_leak_reports(tmp_path: Path) -> None:
    source = tmp_path / "in"
    generate(source, patients=1, series=1, instances=2, rows=8, cols=8)
    (source / "notes.txt").write_text("not DICOM")
    report = pseudonymize_folder(source, tmp_path / "out", Pseudonymizer(SECRET), workers=1)
    text, _ = check_screen(report)
    assert text.startswith("FolderReport OK: 2 written") and "notes.txt" in text
    big = FolderReport(written=[f"a/{n}.dcm" for n in range(5000)],
                       refused=[(f"r/{n}.dcm", "burned-in") for n in range(300)])  # fmt: skip
    text, page = check_screen(big)
    assert "NOT OK" in text and "… 295 more" in text and "a/4999.dcm" not in text + page

    originals = sorted(source.rglob("*.dcm"))
    copies = tmp_path / "copies"
    shutil.copytree(source, copies)
    leaks = scan_leaks(originals, sorted(copies.rglob("*.dcm")))
    text, page = check_screen(leaks)
    assert text.startswith("LeakReport: ") and "leak(s)" in text
    assert str(dcmread(originals[0]).PatientName) not in text + page  # masked
    clean = scan_leaks(originals, sorted((tmp_path / "out").rglob("*.dcm")))
    assert check_screen(clean)[0].startswith("LeakReport: clean")
    flood = LeakReport([Leak(f"f{n}", "PatientName", "name", "PatientName", "DO**(8)")
                        for n in range(2000)], files_scanned=2000)  # fmt: skip
    check_screen(flood)


def test_node_descriptions(settings: Settings, tmp_path: Path) -> None:
    probed = Capabilities(
        store=True,
        probed_at=datetime(2026, 12, 1, tzinfo=UTC),
        details=dict.fromkeys(Capabilities.FLAGS, "status 0xA702 " * 5),
    )
    text, page = check_screen(probed)
    assert text == (
        "Capabilities(store=True, probed_at=datetime.datetime(2026, 12, 1, 0, 0, "
        "tzinfo=datetime.timezone.utc))"
    )
    assert "0xA702" in page
    server = ServerSpec("PACS", "PACSAE", "pacs.local", 104, capabilities=probed,
                        dicomweb_authorization="Bearer s3cret")  # fmt: skip
    text, page = check_screen(server)
    assert "s3cret" not in text + page and "PACSAE" in text and "hidden" in page
    check_screen(FolderSpec("DROP", tmp_path))


def test_guarded_node_and_batch_query_results(settings: Settings, tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'wb.sqlite3'}")
    database.upgrade()
    access: Access = sign_in(database, Identity("ann", IdentitySource.LOCAL), embedded=True)
    node = GuardedNode(FolderNode(FolderSpec("DROP", tmp_path), settings), access)
    text, _ = check_screen(node)
    assert "DROP" in text and "ann" in text

    with database.session() as session:
        job = Job(kind="batch_query", owner="ann", status="SUCCESS", source="PACS")
        session.add(job)
        session.flush()
        for line in range(1, 301):
            task = Task(job_id=job.id, patient_id=f"P{line}", lines=[line], status="SUCCESS")
            session.add(task)
            session.flush()
            if line % 3:
                session.add(BatchQueryResult(job_id=job.id, task_id=task.id,
                                             patient_id=f"P{line}", study_date="20200101",
                                             modalities="CT"))  # fmt: skip
        job_id = job.id
    results = BatchQueryResults(database, job_id)
    text, page = check_screen(results)
    assert text.startswith(
        f"BatchQueryResults of job {job_id}: 300 rows (200 SUCCESS, 100 WARNING)"
    )
    assert "No studies found." in text and "more" in page
    database.dispose()


PUBLIC_TYPES: list[type] = [Patient, Study, Series, Instance, Results, FolderReport, LeakReport,
                            Capabilities, ServerSpec, FolderSpec, GuardedNode,
                            BatchQueryResults, Volume, Preview, Profile, StoreResult,
                            remote_results.Patient, remote_results.Study, remote_results.Series,
                            remote_results.Instance, RemoteNode, RemoteJobHandle,
                            RemoteJobManager]  # fmt: skip


@pytest.mark.parametrize("cls", PUBLIC_TYPES, ids=lambda c: c.__name__)
def test_every_public_type_has_both_reprs(cls: type) -> None:
    has: Callable[[str], bool] = lambda name: any(name in vars(k) for k in cls.__mro__[:-1])  # noqa: E731
    assert has("__repr__") and has("_repr_html_")


def test_results_of_the_service_show_as_the_local_ones(instance: Dataset) -> None:
    node = RemoteNode(ServiceClient("http://127.0.0.1:9/", "t"), {"name": "PACS", "kind": "server",
                      "ae_title": "PACS", "host": "h", "port": 104})  # fmt: skip
    for level, local in ((Level.STUDY, Study), (Level.SERIES, Series), (Level.INSTANCE, Instance)):
        item = remote_results.REMOTE_TYPES[level].from_dataset(instance, node)
        mine = local.from_dataset(instance)
        assert isinstance(item, local)
        text, page = check_screen(item)
        assert text.startswith(f"{local.__name__} on PACS")
        assert page.replace(" on PACS", "") == check_screen(mine)[1]
    assert "PACS" in check_screen(node)[1] and "via http://127.0.0.1:9/" in repr(node)


def test_volume_and_pictures(instance: Dataset) -> None:
    volume = volume_from(iter_datasets(patients=1, series=1, instances=4, rows=16, cols=16))
    text, page = check_screen(volume)
    assert "4 × 16 × 16" in text and "spacing" in page
    thumb = volume.thumbnail()
    assert repr(thumb).startswith("<Picture 16x16 PNG") and thumb._repr_png_()
    preview = Preview([thumb] * 3, title="a study", skipped=[("#9 SR", "no pixel data")])
    assert repr(preview).startswith("Preview a study: 3 picture(s), 1 not shown")
    assert "#9 SR: no pixel data" in preview._repr_html_()
    assert preview._repr_html_().count("<img ") == 3  # pictures: bytes, not lines of text
    assert isinstance(thumb, Picture)


def test_profile_and_store_result(tmp_path: Path) -> None:
    profile = Profile.adit("SUBJ-01", trial_id="T1")
    text, page = check_screen(profile)
    assert text.startswith("Profile(options=BASIC|") and "SUBJ-01" in text
    assert "SafePrivate(" not in text and "allow-listed" in page
    node = FolderNode(FolderSpec("DROP", tmp_path))
    stored = node.store(list(iter_datasets(patients=1, series=1, instances=2, rows=8, cols=8)))
    assert check_screen(stored)[0] == "StoreResult DROP: 2 stored, 0 refused"
    refused = StoreResult("PACS", stored=3, failed={f"1.2.{n}": "0xA700" for n in range(500)})
    text, page = check_screen(refused)
    assert "… " in text and "more" in page
