"""Retries: a round that fails with a retriable error is repeated (stamina, backoff) for
what is still missing; a permanent error is not retried."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from adit_workbench.dicom.server import DicomServer
from adit_workbench.errors import NodeError, NodeTimeout, NotSupported
from adit_workbench.transfer import (
    FolderDestination,
    TransferProgress,
    TransferStatus,
    transfer_study,
)
from adit_workbench.transfer import worker as worker_module
from tests.transfer.conftest import dicom_files


def _flaky(flag_dir: Path, error: NodeError, *, times: int) -> Any:
    """``_encoded`` failing after one instance for the first ``times`` streams.

    Workers are separate (forked) processes: the count lives in the file system.
    """
    real = worker_module._encoded

    def encoded(stream: Any) -> Generator[bytes, None, None]:
        attempts = len(list(flag_dir.iterdir()))
        (flag_dir / f"{stream.series}-{attempts}").touch()
        for i, data in enumerate(real(stream)):
            if attempts < times and i == 1:
                raise error
            yield data

    return encoded


@pytest.mark.parametrize("via", ["cget", "wado"])
def test_retriable_errors_are_retried_for_what_is_missing(
    via: str, source: DicomServer, study_uid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    error = NodeTimeout("ORTHANC1", "C-GET", "no response within 10 s")
    monkeypatch.setattr(worker_module, "_encoded", _flaky(flags, error, times=1))
    result = transfer_study(source, FolderDestination(tmp_path / "out"), study_uid, via=via)
    assert result.status is TransferStatus.SUCCESS and result.delivered == 6, result
    assert len(dicom_files(tmp_path / "out")) == 6
    assert len(list(flags.iterdir())) > 2  # a second round ran


def test_permanent_errors_are_not_retried(
    source: DicomServer, study_uid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    error = NotSupported("ORTHANC1", "C-GET", "study-root C-GET not accepted")
    monkeypatch.setattr(worker_module, "_encoded", _flaky(flags, error, times=99))
    result = transfer_study(source, FolderDestination(tmp_path / "out"), study_uid, via="cget")
    assert result.status is TransferStatus.WARNING and result.missing > 0
    assert "last error" in result.message and "not accepted" in result.message
    assert not result.retriable
    assert len(list(flags.iterdir())) <= 2  # one round: one stream per series


@pytest.fixture
def slow_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers (forked, so patched too) place each instance 0.2 s late: six small
    instances would all be placed before a cancel or an interrupt reached them."""
    real_place = worker_module._place

    def slow_place(*args: Any) -> Any:
        time.sleep(0.2)
        return real_place(*args)

    monkeypatch.setattr(worker_module, "_place", slow_place)


@pytest.mark.usefixtures("slow_placement")
@pytest.mark.parametrize("via", ["cget", "wado", "cmove"])
def test_cancel_stops_every_fetch_method(
    via: str, source: DicomServer, study_uid: str, tmp_path: Path
) -> None:
    cancel = threading.Event()

    def progress(p: TransferProgress) -> None:
        cancel.set()

    result = transfer_study(source, FolderDestination(tmp_path), study_uid, via=via,
                            progress=progress, cancel=cancel)  # fmt: skip
    assert result.status is TransferStatus.WARNING and "cancelled" in result.message
    assert 1 <= result.delivered < 6 or via == "cmove"
    assert len(dicom_files(tmp_path)) == result.delivered
    assert not list(tmp_path.glob(".wb-staging-*"))


@pytest.mark.usefixtures("slow_placement")
def test_an_interrupt_mid_transfer_ends_it_promptly_and_cleanly(
    source: DicomServer, study_uid: str, tmp_path: Path
) -> None:
    # Ctrl-C in a notebook: KeyboardInterrupt in the delivering loop, workers still busy.
    armed = threading.Event()

    def interrupt() -> bool:
        if armed.is_set():
            raise KeyboardInterrupt
        return False

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        transfer_study(source, FolderDestination(tmp_path), study_uid, via="wado",
                       progress=lambda p: armed.set(), cancel=interrupt)  # fmt: skip
    assert time.monotonic() - started < 10
    assert not list(tmp_path.glob(".wb-staging-*"))
