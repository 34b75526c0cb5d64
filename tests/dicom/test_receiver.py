"""The Store SCP receiver: spooling per (AE, study), atomic files, and C-MOVE through it,
also with the receiver in a separate process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset
from pynetdicom import AE, StoragePresentationContexts

from adit_workbench.config import Settings
from adit_workbench.dicom import pdus
from adit_workbench.dicom.dimse import DimseNode
from adit_workbench.dicom.node import QueryLevel
from adit_workbench.dicom.receiver import (
    Receiver,
    expect_peer,
    expire_spool,
    shared_receiver,
    spool_dir,
    study_spool,
)
from adit_workbench.dicom.retrieve import iter_cmove
from adit_workbench.transfer import FolderDestination, TransferStatus, transfer_study
from tests.dicom.conftest import archive_datasets, server_spec
from tests.servers._util import port_open, stop_process, wait_until
from tests.servers.orthanc import OrthancServer

ROOT = Path(__file__).resolve().parents[2]
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _anyone(calling_ae: str, address: str) -> bool:
    return True


def _send(port: int, datasets: list[Dataset], called: str = "ADIT_WB") -> list[int]:
    ae = AE(ae_title="SENDER")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_spools_per_called_ae_and_study(settings: Settings, tmp_path: Path) -> None:
    datasets = archive_datasets()[:4]
    with Receiver(settings, spool=tmp_path, port=0, allow=_anyone) as receiver:
        assert _send(receiver.port, datasets) == [0] * 4
        assert receiver.received == 4
    for ds in datasets:
        path = study_spool(tmp_path, "ADIT_WB", str(ds.StudyInstanceUID))
        assert (path / f"{ds.SOPInstanceUID}.dcm").is_file()
    assert not list(tmp_path.rglob(".*.part")), "temporary files left behind"


def test_spooled_instances_nobody_claims_expire(settings: Settings, tmp_path: Path) -> None:
    datasets = archive_datasets()[:3]
    with Receiver(settings, spool=tmp_path, port=0, allow=_anyone) as receiver:
        assert _send(receiver.port, datasets) == [0] * 3
    files = sorted(tmp_path.rglob("*.dcm"))
    old, young = files[:2], files[2:]
    day_ago = time.time() - 25 * 3600
    for path in old:
        os.utime(path, (day_ago, day_ago))
    assert expire_spool(tmp_path, 24 * 3600) == 2
    assert sorted(tmp_path.rglob("*.dcm")) == young
    for path in young:
        os.utime(path, (day_ago, day_ago))
    with Receiver(
        settings, spool=tmp_path, port=0, allow=_anyone
    ):  # a receiver expires when it starts
        pass
    assert not list(tmp_path.rglob("*.dcm"))
    assert [p for p in tmp_path.rglob("*") if p.is_dir()] == [], "empty study folders stay"


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_refuses_an_instance_it_cannot_route(settings: Settings, tmp_path: Path) -> None:
    ds = archive_datasets()[0]
    ds.SOPInstanceUID = "../../escape"
    with Receiver(settings, spool=tmp_path, port=0, allow=_anyone) as receiver:
        assert _send(receiver.port, [ds]) == [0xC000]
    assert not list(tmp_path.rglob("*.dcm"))


def _answer(port: int, calling: str, called: str, sop_class: str) -> str:
    """What the receiver answers an A-ASSOCIATE-RQ, read off a raw socket: ``accept``
    or ``reject RESULT SOURCE REASON``.

    Not pynetdicom's ``is_rejected``: its requestor checks that the socket is still
    connected only after the DUL thread has run, so a peer that rejects (and closes)
    before the calling thread is scheduled again reads as an abort (is_rejected False).
    """
    request = pdus.request_pdu(called, calling, [(1, sop_class, [EXPLICIT_LE])], 1 << 16)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        header = b""
        while len(header) < 6:
            chunk = sock.recv(6 - len(header))
            assert chunk, "the receiver closed without answering"
            header += chunk
        kind, length = header[0], int.from_bytes(header[2:6], "big")
        body = b""
        while len(body) < length:
            chunk = sock.recv(length - len(body))
            assert chunk, "the receiver closed mid-answer"
            body += chunk
    if kind == pdus.ASSOCIATE_AC:
        return "accept"
    assert kind == pdus.ASSOCIATE_RJ, f"PDU type 0x{kind:02X}"
    return f"reject {body[1]} {body[2]} {body[3]}"


def test_only_known_nodes_store_and_the_called_ae_chooses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    datasets = archive_datasets()[:1]
    sop_class = str(datasets[0].SOPClassUID)
    unknown_calling = f"reject {pdus.PERMANENT} {pdus.RJ_USER} {pdus.RJ_CALLING_UNKNOWN}"
    unknown_called = f"reject {pdus.PERMANENT} {pdus.RJ_USER} {pdus.RJ_CALLED_UNKNOWN}"
    with Receiver(settings, spool=tmp_path, port=0) as receiver:  # default: expected peers
        ours = receiver.ae_title
        assert _answer(receiver.port, "SENDER", ours, sop_class) == unknown_calling
        with expect_peer("SENDER", "localhost"):
            assert _answer(receiver.port, "SENDER", ours, sop_class) == "accept"
            assert _send(receiver.port, datasets, called=ours) == [0]
            # a called AE title not ours: no folder of its own
            assert _answer(receiver.port, "SENDER", "OTHER_AE", sop_class) == unknown_called
        assert _answer(receiver.port, "SENDER", ours, sop_class) == unknown_calling
    assert [p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*.dcm")] == [
        receiver.ae_title
    ]


def test_study_spool_never_leaves_the_spool(tmp_path: Path) -> None:
    path = study_spool(tmp_path, "../AE", "../../x")
    assert path.parent == tmp_path / "___AE" and not path.name.startswith(".")  # in the spool
    assert path != study_spool(tmp_path, "../AE", "../../y")  # two studies, two folders


def test_cmove_through_an_in_process_receiver(
    node_settings: Settings, loaded_orthanc: OrthancServer
) -> None:
    study = archive_datasets()[0]
    node = DimseNode(server_spec(loaded_orthanc), node_settings)
    query = Dataset()
    query.StudyInstanceUID = str(study.StudyInstanceUID)
    with shared_receiver(node_settings) as spool:
        paths = list(iter_cmove(node, QueryLevel.STUDY, query, spool=spool))
    node.close()
    assert len(paths) == 4 and all(p.is_file() for p in paths)  # claimed for the caller
    assert {p.stem for p in paths} == {
        str(ds.SOPInstanceUID)
        for ds in archive_datasets()
        if ds.StudyInstanceUID == study.StudyInstanceUID
    }


def test_a_whole_series_move_claims_only_its_series_from_the_study_folder(
    node_settings: Settings, loaded_orthanc: OrthancServer
) -> None:
    """A transfer moves whole series without listing them first: it takes what the move
    brings, and from the study folder (another transfer's files) only its series."""
    study = archive_datasets()[0]
    uid = str(study.StudyInstanceUID)
    in_study = [ds for ds in archive_datasets() if ds.StudyInstanceUID == uid]
    moved = str(in_study[0].SeriesInstanceUID)
    other = next(ds for ds in in_study if ds.SeriesInstanceUID != moved)
    query = Dataset()
    query.StudyInstanceUID = uid
    query.SeriesInstanceUID = moved
    node = DimseNode(server_spec(loaded_orthanc), node_settings)
    with shared_receiver(node_settings) as spool:
        folder = study_spool(spool, node_settings.ae_title, uid)
        folder.mkdir(parents=True, exist_ok=True)
        foreign = folder / f"{other.SOPInstanceUID}.dcm"
        other.save_as(foreign, enforce_file_format=True)
        paths = list(iter_cmove(node, QueryLevel.SERIES, query, spool=spool, series=moved))
    node.close()
    assert {p.stem for p in paths} == {
        str(ds.SOPInstanceUID) for ds in in_study if ds.SeriesInstanceUID == moved
    }
    assert foreign.is_file(), "another series' file was claimed"
    foreign.unlink()


def test_two_moves_of_one_study_at_once_each_get_all_of_it(
    node_settings: Settings, loaded_orthanc: OrthancServer
) -> None:
    study = archive_datasets()[0]
    expected = {
        str(ds.SOPInstanceUID)
        for ds in archive_datasets()
        if ds.StudyInstanceUID == study.StudyInstanceUID
    }
    query = Dataset()
    query.StudyInstanceUID = str(study.StudyInstanceUID)
    got: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    both_started = threading.Barrier(2)

    def one_move(n: int, spool: Path) -> None:
        node = DimseNode(server_spec(loaded_orthanc), node_settings)
        try:
            both_started.wait(10)
            got[n] = []
            for path in iter_cmove(node, QueryLevel.STUDY, query, spool=spool):
                got[n].append(path.stem)
                path.unlink()
        except BaseException as exc:
            errors.append(exc)
        finally:
            node.close()

    with shared_receiver(node_settings) as spool:
        threads = [threading.Thread(target=one_move, args=(n, spool)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    # Each move got every instance of the study once: none lost to the other, none twice.
    assert sorted(got[1]) == sorted(expected) == sorted(got[2])
    leftover = [p for p in study_spool(spool, node_settings.ae_title, query.StudyInstanceUID)
                .rglob("*.dcm")]  # fmt: skip
    assert leftover == []


@pytest.fixture
def external_receiver(node_settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m adit_workbench.dicom.receiver`` in its own process, on the test port."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adit_workbench.dicom.receiver",
            "--spool",
            str(spool_dir(node_settings)),
            "--allow",
            "ORTHANC1@127.0.0.1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: port_open(node_settings.receiver_port), 20, "receiver", proc=proc)
    yield proc
    stop_process(proc)


def test_transfer_with_the_receiver_in_another_process(
    node_settings: Settings,
    loaded_orthanc: OrthancServer,
    external_receiver: subprocess.Popen[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adit_workbench.dicom.server import DicomServer

    def no_local_receiver(self: Receiver) -> Receiver:
        raise AssertionError("the transfer started a receiver of its own")

    monkeypatch.setattr(Receiver, "start", no_local_receiver)
    study = str(archive_datasets()[0].StudyInstanceUID)
    source = DicomServer(server_spec(loaded_orthanc), node_settings)
    try:
        result = transfer_study(source, FolderDestination(tmp_path), study, via="cmove")
    finally:
        source.close()
    assert result.status is TransferStatus.SUCCESS and result.delivered == 4
    assert external_receiver.poll() is None
