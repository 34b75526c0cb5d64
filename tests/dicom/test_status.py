"""DIMSE statuses as data, the failure helper, TCP_NODELAY."""

from __future__ import annotations

import socket

import pytest
from pydicom import Dataset
from pynetdicom import AE

from adit_workbench.dicom import nodelay
from adit_workbench.dicom.status import (
    Category,
    Status,
    category,
    describe,
    is_failure,
    is_pending,
    raise_for_status,
)
from adit_workbench.errors import DicomStatusError
from tests.servers._util import free_port


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0x0000, Category.SUCCESS),
        (0xFF00, Category.PENDING),
        (0xFF01, Category.PENDING),
        (0xFE00, Category.CANCEL),
        (0xB000, Category.WARNING),
        (0xA702, Category.FAILURE),
        (0xC123, Category.FAILURE),
    ],
)
def test_categories(code: int, expected: Category) -> None:
    assert category(code) is expected


def test_predicates_and_text() -> None:
    assert is_pending(Status.PENDING) and not is_pending(Status.SUCCESS)
    assert is_failure(0xC000) and is_failure(0xFE00) and not is_failure(0xB000)
    assert describe(0xA702) == "status 0xA702 (out of resources: unable to perform sub-operations)"
    assert describe(0xC0FF) == "status 0xC0FF (unable to process)"


def test_raise_for_status_keeps_error_comment_out_of_the_message() -> None:
    status = Dataset()
    status.Status = 0xC000
    status.ErrorComment = "no study for patient SECRET123"
    raise_for_status("PACS", "C-FIND", Status.SUCCESS)  # no exception
    with pytest.raises(DicomStatusError) as info:
        raise_for_status("PACS", "C-MOVE", status, "destination X")
    error = info.value
    assert "SECRET123" not in str(error)
    assert error.error_comment == "no study for patient SECRET123"  # type: ignore[attr-defined]
    assert (error.node, error.operation, error.status) == ("PACS", "C-MOVE", 0xC000)
    assert (
        str(error)
        == "PACS: C-MOVE failed: status 0xC000 (Failure): unable to process; destination X"
    )


def test_nodelay_on_client_and_accepted_sockets() -> None:
    nodelay.install()
    nodelay.install()  # idempotent
    assert nodelay.installed()
    seen: dict[str, int] = {}
    port = free_port()
    scp = AE(ae_title="SCP")
    scp.add_supported_context("1.2.840.10008.1.1")
    server = scp.start_server(("127.0.0.1", port), block=False)
    try:
        scu = AE(ae_title="SCU")
        scu.add_requested_context("1.2.840.10008.1.1")
        assoc = scu.associate("127.0.0.1", port)
        assert assoc.is_established
        client_sock = assoc.dul.socket.socket  # type: ignore[union-attr]
        seen["client"] = client_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        accepted = server.active_associations[0].dul.socket.socket
        seen["server"] = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assoc.release()
    finally:
        server.shutdown()
    assert seen["client"] and seen["server"]
