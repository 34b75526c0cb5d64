"""Interrupted transfers: killed half-way or cancelled, then run again.

A re-run must deliver every instance exactly once: what the killed run delivered is
skipped (the destination is asked, or its files listed), the rest is fetched, and the
dead run's staging folder is cleaned up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from adit_workbench.config import Settings
from adit_workbench.deid import Pseudonymizer
from adit_workbench.dicom.server import DicomServer
from adit_workbench.transfer import (
    ArchiveDestination,
    FolderDestination,
    TransferProgress,
    TransferStatus,
    transfer_study,
)
from tests.servers.orthanc import OrthancServer
from tests.transfer.conftest import dicom_files, zip_datasets

ROOT = Path(__file__).resolve().parents[2]


def _names(files: list[Path]) -> list[str]:
    return sorted(p.name for p in files)


@pytest.mark.parametrize("via", ["cget", "wado", "cmove"])
def test_killed_half_way_then_rerun_delivers_each_instance_once(
    via: str,
    source: DicomServer,
    orthanc: OrthancServer,
    originals: list[Dataset],
    study_uid: str,
    pseudonymizer: Pseudonymizer,
    tsettings: Settings,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    job = {
        "settings": {
            "data_dir": str(tsettings.data_dir),
            "ae_title": tsettings.ae_title,
            "receiver_host": tsettings.receiver_host,
            "receiver_port": tsettings.receiver_port,
            "dimse_timeout": 10,
            "network_timeout": 10,
        },
        "spec": {
            "name": orthanc.name,
            "ae_title": orthanc.ae_title,
            "host": orthanc.host,
            "port": orthanc.dicom_port,
            "dicomweb_root_url": orthanc.dicomweb_url,
            "max_associations": 3,
        },
        "study": study_uid,
        "via": via,
        "out": str(out),
        "kill_after": 3,
    }
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(job))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.transfer.killed_run", str(spec)],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its orphaned workers
    before = dicom_files(out / "job")
    assert 3 <= len(before) < 6
    assert list(out.glob("job/.wb-staging-*")), "the killed run left its staging folder"

    result = transfer_study(
        source, FolderDestination(out, "job"), study_uid, via=via, pseudonymizer=pseudonymizer
    )
    assert result.status is TransferStatus.SUCCESS, result
    assert (result.skipped, result.delivered) == (len(before), 6 - len(before))
    after = dicom_files(out / "job")
    assert len(after) == 6 and len(set(_names(after))) == 6
    assert set(_names(before)) <= set(_names(after))
    assert not list(out.glob("job/.wb-staging-*")), "stale staging not cleaned"
    for path in after:
        assert dcmread(path).pixel_array.shape == (64, 64)  # complete files only


def test_cancel_then_rerun_into_an_archive(
    source: DicomServer, study_uid: str, pseudonymizer: Pseudonymizer, tmp_path: Path
) -> None:
    cancel = threading.Event()

    def progress(p: TransferProgress) -> None:
        if p.instances_done >= 2:
            cancel.set()

    target = ArchiveDestination(tmp_path, "pw", "job")
    first = transfer_study(
        source, target, study_uid, via="wado", pseudonymizer=pseudonymizer,
        progress=progress, cancel=cancel,
    )  # fmt: skip
    assert first.status is TransferStatus.WARNING and "cancelled" in first.message
    assert 2 <= first.delivered < 6 and first.missing == 6 - first.delivered
    second = transfer_study(source, target, study_uid, via="cget", pseudonymizer=pseudonymizer)
    assert second.status is TransferStatus.SUCCESS
    assert (second.skipped, second.delivered) == (first.delivered, 6 - first.delivered)
    entries = zip_datasets(tmp_path / "job.zip", "pw", tmp_path / "unzipped")
    assert len(entries) == 6 and len(set(_names(entries))) == 6
    assert not list(tmp_path.glob(".wb-staging-*"))


def test_files_appear_complete_or_not_at_all(
    source: DicomServer, study_uid: str, pseudonymizer: Pseudonymizer, tmp_path: Path
) -> None:
    """At every progress tick, each visible file is a complete instance (temp, then rename).

    Workers rename their files into place themselves, so the folder may be ahead of
    the progress count, never behind it.
    """
    seen: list[int] = []

    def progress(p: TransferProgress) -> None:
        visible = dicom_files(tmp_path / "job")
        for path in visible:
            assert dcmread(path).pixel_array.shape == (64, 64)
        assert len(visible) >= p.instances_done
        seen.append(p.instances_done)

    result = transfer_study(
        source, FolderDestination(tmp_path, "job"), study_uid, via="cget",
        pseudonymizer=pseudonymizer, progress=progress,
    )  # fmt: skip
    assert result.ok and seen == [1, 2, 3, 4, 5, 6]
