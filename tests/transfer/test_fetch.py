"""Choosing how to fetch, and the direct PACS-to-PACS move with its fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom import Dataset

from adit_workbench.config import Settings
from adit_workbench.deid import Pseudonymizer
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import Capabilities
from adit_workbench.errors import InputError, NotSupported
from adit_workbench.transfer import (
    FolderDestination,
    ServerDestination,
    TransferStatus,
    transfer_study,
)
from adit_workbench.transfer.fetch import choose_fetch
from tests.servers.orthanc import OrthancServer
from tests.transfer.conftest import spec_for


def _node(caps: Capabilities, *, dimse: bool = True, web: bool = True, limit: int = 3) -> Any:
    spec = SimpleNamespace(capabilities=caps, max_associations=limit)
    pool = SimpleNamespace(open_count=1)
    return SimpleNamespace(
        name="SRC",
        spec=spec,
        dimse=SimpleNamespace(pool=pool) if dimse else None,
        dicomweb=object() if web else None,
    )


@pytest.mark.parametrize(
    ("caps", "dimse", "web", "expected"),
    [
        (Capabilities(study_root_get=True, study_root_move=True, wado=True), True, True, "wado"),
        (Capabilities(study_root_get=True, study_root_move=True), True, False, "cget"),
        (Capabilities(study_root_get=False, study_root_move=True), True, False, "cmove"),
        (Capabilities(), False, True, "wado"),
        (Capabilities(), True, False, "cget"),
    ],
)
def test_auto_prefers_wado_then_cget_then_cmove(
    caps: Capabilities, dimse: bool, web: bool, expected: str, tmp_path: Path
) -> None:
    fetch = choose_fetch(_node(caps, dimse=dimse, web=web), FolderDestination(tmp_path), "auto",
                         None, frozenset())  # fmt: skip
    assert fetch.method == expected


def test_stream_budget_leaves_room_for_the_parents_association(tmp_path: Path) -> None:
    node = _node(Capabilities(study_root_get=True), web=False, limit=3)
    assert choose_fetch(node, FolderDestination(tmp_path), "cget", None, frozenset()).streams == 2
    node = _node(Capabilities(study_root_get=True), web=False, limit=1)
    assert choose_fetch(node, FolderDestination(tmp_path), "cget", None, frozenset()).streams == 1


def test_direct_move_only_when_nothing_changes(
    tmp_path: Path, pseudonymizer: Pseudonymizer
) -> None:
    caps = Capabilities(study_root_move=True, wado=True)
    target = ServerDestination(_node(caps))
    assert choose_fetch(_node(caps), target, "auto", None, frozenset()).method == "direct-move"
    assert choose_fetch(_node(caps), target, "auto", pseudonymizer, frozenset()).method == "wado"
    stow = ServerDestination(_node(caps), via="dicomweb")
    assert choose_fetch(_node(caps), stow, "auto", None, frozenset()).method == "wado"


def test_bad_or_impossible_via(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        choose_fetch(_node(Capabilities()), FolderDestination(tmp_path), "ftp", None, frozenset())
    with pytest.raises(NotSupported):
        choose_fetch(_node(Capabilities(), web=False), FolderDestination(tmp_path), "wado",
                     None, frozenset())  # fmt: skip


def test_direct_move_falls_back_when_the_source_does_not_know_the_destination(
    source: DicomServer,
    originals: list[Dataset],
    study_uid: str,
    tsettings: Settings,
    orthanc_factory: Callable[..., OrthancServer],
) -> None:
    stranger = orthanc_factory()  # ORTHANC1 has no DicomModalities entry for it
    destination = DicomServer(spec_for(stranger), tsettings)
    try:
        result = transfer_study(source, destination, study_uid)
    finally:
        destination.close()
    assert result.status is TransferStatus.SUCCESS and result.delivered == 6
    assert result.via == "wado"
    assert stranger.statistics()["CountInstances"] == 6


def test_direct_move_and_a_resumed_one(
    source: DicomServer, destination: DicomServer, originals: list[Dataset], study_uid: str,
    orthanc2: OrthancServer,
) -> None:  # fmt: skip
    series = str(originals[0].SeriesInstanceUID)
    first = transfer_study(source, destination, study_uid, [series])
    assert (first.via, first.delivered, first.expected) == ("direct-move", 3, 3)
    second = transfer_study(source, destination, study_uid)
    assert (second.via, second.delivered, second.skipped) == ("direct-move", 3, 3)
    assert orthanc2.statistics()["CountInstances"] == 6


@pytest.mark.parametrize(("limit", "side_by_side"), [(3, 2), (1, 1)])
def test_cmove_moves_series_side_by_side_within_the_limit(
    limit: int,
    side_by_side: int,
    orthanc: OrthancServer,
    originals: list[Dataset],
    tsettings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import time

    from adit_workbench.transfer import fetch as fetch_module

    real = fetch_module.iter_cmove
    running = [0, 0]  # now, most at once
    lock = threading.Lock()

    def watched(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            running[1] = max(running)
        try:
            time.sleep(0.2)  # long enough for the other series' move to start
            yield from real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(fetch_module, "iter_cmove", watched)
    with DicomServer(spec_for(orthanc, max_associations=limit), tsettings) as source:
        study = str(originals[0].StudyInstanceUID)
        result = transfer_study(source, FolderDestination(tmp_path), study, via="cmove")
    assert result.ok and result.delivered == len(originals)
    assert running[1] == side_by_side
