"""The socket-level Store SCP under the receiver (:mod:`adit_workbench.dicom.storescp`),
spoken to by pynetdicom as the requestor: negotiation, C-ECHO, C-STORE, the limits."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pynetdicom import AE
from pynetdicom.dsutils import encode

from adit_workbench.dicom.association import VERIFICATION
from adit_workbench.dicom.storescp import StoreServer
from tests.dicom.conftest import archive_datasets

CT = "1.2.840.10008.5.1.4.1.1.2"
PRIVATE = "1.2.826.0.1.3680043.8.498.999"


@pytest.fixture
def stored() -> list[tuple[str, bytes]]:
    return []  # (SOP class, Part-10 bytes)


@pytest.fixture
def server(stored: list[tuple[str, bytes]]) -> Iterator[Callable[..., StoreServer]]:
    servers: list[StoreServer] = []

    def start(status: int = 0, **options: Any) -> StoreServer:
        def on_store(request: dict[int, bytes], data: bytes) -> int:
            stored.append((request[0x0002].rstrip(b"\0").decode(), data))
            return status

        options.setdefault("timeout", 10)
        options.setdefault("ae_title", "ADIT_WB")
        servers.append(StoreServer("127.0.0.1", 0, on_store, **options))
        return servers[-1]

    yield start
    for running in servers:
        running.shutdown()


def _associate(port: int, *, contexts: list[str] | None = None, max_pdu: int = 0) -> Any:
    ae = AE(ae_title="SENDER")
    ae.maximum_pdu_size = max_pdu
    for uid in contexts or [VERIFICATION, CT]:
        ae.add_requested_context(uid)
    return ae.associate("127.0.0.1", port, ae_title="ADIT_WB")


def test_stores_and_echoes_and_releases(server: Any, stored: list[tuple[str, bytes]]) -> None:
    ct = [ds for ds in archive_datasets() if ds.SOPClassUID == CT][:3]
    scp = server()
    assoc = _associate(scp.port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assert [int(assoc.send_c_store(ds).Status) for ds in ct] == [0, 0, 0]
    assoc.release()
    assert assoc.is_released
    assert [sop_class for sop_class, _ in stored] == [CT] * 3
    for sent, (_, data) in zip(ct, stored, strict=True):
        got = dcmread(io.BytesIO(data))
        assert got.file_meta.MediaStorageSOPInstanceUID == sent.SOPInstanceUID
        assert got.SOPInstanceUID == sent.SOPInstanceUID and got.PixelData == sent.PixelData


def test_the_handlers_status_is_the_answer(server: Any) -> None:
    scp = server(status=0xA700)
    assoc = _associate(scp.port)
    assert int(assoc.send_c_store(archive_datasets()[0]).Status) == 0xA700
    assoc.release()


def test_private_classes_are_taken_other_services_refused(server: Any) -> None:
    scp = server()
    find = "1.2.840.10008.5.1.4.1.2.2.1"  # study-root C-FIND: not a storage class
    assoc = _associate(scp.port, contexts=[PRIVATE, CT, find])
    assert assoc.is_established
    assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == [PRIVATE, CT]
    assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [find]
    assoc.release()


def test_responses_fit_the_requestors_pdu_limit(
    server: Any, stored: list[tuple[str, bytes]]
) -> None:
    scp = server()
    assoc = _associate(scp.port, max_pdu=64)  # every C-STORE-RSP goes in fragments
    ds = archive_datasets()[0]
    assert int(assoc.send_c_store(ds).Status) == 0
    assoc.release()
    assert len(stored) == 1


def test_busy_rejects_until_a_slot_is_free(server: Any) -> None:
    scp = server(max_associations=1)
    first = _associate(scp.port)
    assert first.is_established
    second = _associate(scp.port)
    assert second.is_rejected  # transient: try again later
    first.release()
    _wait_for(lambda: not scp.open_count)
    third = _associate(scp.port)
    assert third.is_established
    third.release()


def test_a_silent_peer_is_aborted(server: Any) -> None:
    scp = server(timeout=0.3)
    assoc = _associate(scp.port)
    assert assoc.is_established
    _wait_for(lambda: assoc.is_aborted)  # it says nothing: the server aborts it
    assert assoc.is_aborted


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_shutdown_aborts_what_is_open(server: Any) -> None:
    scp = server()
    assoc = _associate(scp.port)
    assert assoc.is_established
    scp.shutdown()
    _wait_for(lambda: not assoc.is_established)
    assert not assoc.is_established
    assert not _associate(scp.port).is_established  # no longer listening


def test_a_dataset_is_kept_byte_for_byte(server: Any, stored: list[tuple[str, bytes]]) -> None:
    ds: Dataset = archive_datasets()[0]
    scp = server()
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(str(ds.SOPClassUID), ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ADIT_WB")
    assert int(assoc.send_c_store(ds).Status) == 0
    assoc.release()
    sent = encode(ds, False, True)  # what pynetdicom put on the wire
    assert sent and stored[0][1].endswith(sent)
    meta = dcmread(io.BytesIO(stored[0][1])).file_meta
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
