"""Verification against the source's own count; exclusion; the burned-in guard; sources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from adit_workbench.config import Settings
from adit_workbench.deid import Pseudonymizer
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.errors import NodeUnreachable, TransferIncomplete
from adit_workbench.sandbox.synthetic import generate, iter_datasets
from adit_workbench.transfer import (
    FolderDestination,
    ServerDestination,
    TransferProgress,
    TransferStatus,
    transfer_study,
)
from adit_workbench.transfer import study as study_module
from adit_workbench.transfer import worker as worker_module
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer
from tests.transfer.conftest import dicom_files, leaks, server_files, spec_for


def _mixed() -> list[Dataset]:
    """One study: CT, CT with burned-in text on one image, and an SR series."""
    datasets = list(
        iter_datasets(patients=1, studies=1, series=3, instances=2, rows=16, cols=16, seed=33)
    )
    series = [str(ds.SeriesInstanceUID) for ds in datasets]
    for ds in datasets:
        if str(ds.SeriesInstanceUID) == series[-1]:
            ds.Modality = "SR"
    datasets[2].BurnedInAnnotation = "YES"
    return datasets


@pytest.fixture(scope="module")
def mixed(orthanc_pair: tuple[OrthancServer, OrthancServer]) -> list[Dataset]:
    orthanc_pair[0].clear()
    datasets = _mixed()
    orthanc_pair[0].upload(datasets)
    return datasets


@pytest.fixture
def mixed_uid(mixed: list[Dataset]) -> str:
    return str(mixed[0].StudyInstanceUID)


def test_pseudonymizing_excludes_sr_and_refuses_burned_in(
    source: DicomServer,
    mixed: list[Dataset],
    mixed_uid: str,
    pseudonymizer: Pseudonymizer,
    tmp_path: Path,
) -> None:
    result = transfer_study(
        source, FolderDestination(tmp_path, "j"), mixed_uid, via="wado",
        pseudonymizer=pseudonymizer,
    )  # fmt: skip
    assert (result.expected, result.delivered, result.excluded, result.refused) == (6, 3, 2, 1)
    assert result.status is TransferStatus.WARNING and "burned-in" in result.message
    assert result.missing == 0
    files = dicom_files(tmp_path / "j")
    assert len(files) == 3
    assert {p.parent.parent.name.rsplit("-", 1)[1] for p in files} == {"CT"}
    assert not leaks(mixed, files, tmp_path)


def test_without_pseudonymization_everything_goes(
    source: DicomServer, mixed_uid: str, tmp_path: Path
) -> None:
    result = transfer_study(source, FolderDestination(tmp_path), mixed_uid, via="cget")
    assert result.status is TransferStatus.SUCCESS and result.delivered == 6
    study_dirs = {p.parent.parent.name for p in dicom_files(tmp_path)}
    assert len(study_dirs) == 1 and study_dirs.pop().endswith("-CT,SR")


def test_series_selection_and_progress(
    source: DicomServer, mixed: list[Dataset], mixed_uid: str, tmp_path: Path
) -> None:
    wanted = str(mixed[0].SeriesInstanceUID)
    ticks: list[TransferProgress] = []
    result = transfer_study(
        source, FolderDestination(tmp_path), mixed_uid, [wanted], via="cmove",
        progress=ticks.append,
    )  # fmt: skip
    assert (result.expected, result.delivered) == (2, 2)
    assert [t.instances_done for t in ticks] == [1, 2]
    assert ticks[-1].instances_total == 2 and ticks[-1].bytes_done == result.bytes > 0
    assert ticks[-1].bytes_total == ticks[-1].bytes_done and ticks[-1].fraction == 1.0


def _failing(which: set[str] | None) -> Any:
    real = worker_module.prepare

    def prepare(config: Any, data: bytes, hint: str = "") -> tuple[str, Any]:
        kind, payload = real(config, data, hint)
        sop = payload.source_sop if kind == "ok" else payload[0]
        if which is None or sop in which:
            if kind == "ok":
                Path(payload.staged).unlink()
            return "failed", (sop, "test failure")
        return kind, payload

    return prepare


def test_some_missing_is_a_warning_with_the_count(
    source: DicomServer,
    mixed: list[Dataset],
    mixed_uid: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Worker processes are forked, so they inherit the patched function.
    monkeypatch.setattr(worker_module, "prepare", _failing({str(mixed[0].SOPInstanceUID)}))
    result = transfer_study(source, FolderDestination(tmp_path), mixed_uid, via="cget")
    assert result.status is TransferStatus.WARNING
    assert (result.delivered, result.missing) == (5, 1)
    assert "1 of 6 instances missing" in result.message and result.retriable
    assert result.raise_for_status() is result


def test_nothing_delivered_is_a_retriable_failure(
    source: DicomServer, mixed_uid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "prepare", _failing(None))
    result = transfer_study(source, FolderDestination(tmp_path), mixed_uid, via="wado")
    assert result.status is TransferStatus.FAILURE and result.retriable
    with pytest.raises(TransferIncomplete) as caught:
        result.raise_for_status()
    assert caught.value.retriable


def test_unreachable_source_raises_a_retriable_error(
    tsettings: Settings, orthanc: OrthancServer, tmp_path: Path
) -> None:
    dead = DicomServer(
        spec_for(orthanc, port=free_port(), dicomweb_root_url=None, name="DEAD"), tsettings
    )
    with pytest.raises(NodeUnreachable) as caught:
        transfer_study(dead, FolderDestination(tmp_path), "1.2.3", via="cget")
    assert caught.value.retriable and "DEAD" in str(caught.value)


@pytest.fixture
def upload_folder(tmp_path: Path) -> Iterator[tuple[Path, list[Dataset]]]:
    folder = tmp_path / "upload"
    kwargs: dict[str, Any] = {"patients": 1, "studies": 1, "series": 2, "instances": 2,
                              "rows": 16, "cols": 16, "seed": 44, "pid_prefix": "UPL"}  # fmt: skip
    generate(folder, **kwargs)
    yield folder, list(iter_datasets(**kwargs))


@pytest.mark.parametrize("via", ["dimse", "dicomweb"])
def test_folder_source_is_adit_upload(
    via: str,
    upload_folder: tuple[Path, list[Dataset]],
    destination: DicomServer,
    orthanc2: OrthancServer,
    pseudonymizer: Pseudonymizer,
    tsettings: Settings,
    tmp_path: Path,
) -> None:
    folder, datasets = upload_folder
    source = FolderNode(FolderSpec("UPLOAD", folder), tsettings)
    study = str(datasets[0].StudyInstanceUID)
    result = transfer_study(
        source, ServerDestination(destination, via=via), study, pseudonymizer=pseudonymizer
    )
    assert result.status is TransferStatus.SUCCESS and result.via == "folder"
    assert result.delivered == 4 and len(list(folder.rglob("*.dcm"))) == 4  # source untouched
    assert not leaks(datasets, server_files(orthanc2, tmp_path / "fetched"))
    again = transfer_study(
        source, ServerDestination(destination, via=via), study, pseudonymizer=pseudonymizer
    )
    assert (again.delivered, again.skipped) == (0, 4)


@pytest.mark.parametrize("via", ["wado", "cget", "cmove"])
@pytest.mark.parametrize("lone", [False, True], ids=["study", "lone-series"])
def test_counts_verify_a_fresh_copy_without_listing_instances(
    via: str,
    lone: bool,
    source: DicomServer,
    mixed: list[Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed: list[Any] = []
    monkeypatch.setattr(study_module, "list_instances", lambda *args: listed.append(args))
    series = [str(mixed[0].SeriesInstanceUID)] if lone else None
    result = transfer_study(source, FolderDestination(tmp_path), str(mixed[0].StudyInstanceUID),
                            series_uids=series, via=via)  # fmt: skip
    expected = 2 if lone else 6
    assert result.ok and (result.expected, result.delivered) == (expected, expected)
    # The series' counts matched what arrived; a lone series is not split for C-GET.
    assert not listed


@pytest.mark.parametrize("via", ["wado", "cmove"])
def test_instances_listed_when_count_and_arrivals_disagree(
    via: str,
    orthanc: OrthancServer,
    source: DicomServer,
    mixed: list[Dataset],
    mixed_uid: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The PACS receives one more instance of the series while the transfer runs."""
    late = next(iter_datasets(patients=1, studies=1, series=1, instances=1, rows=16, cols=16,
                              seed=34))  # fmt: skip
    late.PatientID, late.PatientName = mixed[0].PatientID, mixed[0].PatientName
    late.StudyInstanceUID = mixed_uid
    late.SeriesInstanceUID = mixed[0].SeriesInstanceUID
    real = study_module.find_series

    def plan_then_receive(*args: Any) -> Any:
        plan = real(*args)
        orthanc.upload([late])
        return plan

    monkeypatch.setattr(study_module, "find_series", plan_then_receive)
    try:
        result = transfer_study(source, FolderDestination(tmp_path), mixed_uid, via=via)
    finally:
        orthanc.rest("DELETE", f"/instances/{_orthanc_id(orthanc, str(late.SOPInstanceUID))}")
    assert result.ok, str(result)
    assert (result.expected, result.delivered) == (7, 7)  # listed: 7, not the count 6


def test_a_source_without_counts_is_listed_while_fetching(
    source: DicomServer, mixed_uid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some PACS leave NumberOfSeriesRelatedInstances out (a fault Orthanc cannot make)."""
    real = study_module.find_series

    def without_counts(*args: Any) -> Any:
        plan = real(*args)
        for series in plan.series:
            series.count = 0
        return plan

    monkeypatch.setattr(study_module, "find_series", without_counts)
    result = transfer_study(source, FolderDestination(tmp_path), mixed_uid, via="cget")
    assert result.ok and (result.expected, result.delivered) == (6, 6)


def _orthanc_id(server: OrthancServer, sop: str) -> str:
    found = server.rest("POST", "/tools/lookup", data=sop)
    return str(next(item["ID"] for item in found if item["Type"] == "Instance"))


def test_no_idle_association_polls_while_workers_fetch(
    source: DicomServer, mixed_uid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan's association is released once the streams are submitted (its threads
    poll at 1 kHz), not before: the workers need not wait for pynetdicom's release."""
    pool = source.dimse.pool
    open_count: list[int] = []
    real = study_module.run_round

    def watched(**kwargs: Any) -> Any:
        open_count.append(pool.open_count)
        try:
            return real(**kwargs)
        finally:
            open_count.append(pool.open_count)

    monkeypatch.setattr(study_module, "run_round", watched)
    result = transfer_study(source, FolderDestination(tmp_path), mixed_uid, via="wado")
    assert result.ok and open_count == [1, 0]
    assert list(source.find("STUDY", _study_query(mixed_uid)))  # the pool still serves


def _study_query(uid: str) -> Dataset:
    query = Dataset()
    query.StudyInstanceUID = uid
    return query
