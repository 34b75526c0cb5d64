"""The detached sandbox process: start, status, peers, stop, in a temporary data dir."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from adit_workbench.config import Settings, get_settings
from adit_workbench.errors import InputError
from adit_workbench.sandbox import (
    SandboxError,
    set_peers,
    start_background,
    status,
    stop_background,
)
from adit_workbench.sandbox.pacs import SandboxPacs
from tests.servers._util import free_port, port_open

from .conftest import Scu, store_scp


@pytest.fixture
def sandbox_settings(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("ADIT_WB_SANDBOX_PORT", str(free_port()))
    monkeypatch.setenv("ADIT_WB_SANDBOX_PATIENTS", "2")
    get_settings.cache_clear()
    settings = get_settings()
    yield settings
    stop_background(settings)


def _client(settings: Settings) -> Scu:
    handle = SandboxPacs.__new__(SandboxPacs)  # only .port and .ae_title are needed
    handle.port, handle.ae_title = settings.sandbox_port, settings.sandbox_ae_title
    return Scu(handle)


def test_start_status_move_stop(sandbox_settings: Settings) -> None:
    settings = sandbox_settings
    assert status(settings) is None
    started = start_background(settings)
    assert started.running and started.pid
    assert started.port == settings.sandbox_port and started.host == "127.0.0.1"
    assert started.counts == {"patients": 2, "studies": 4, "series": 8, "instances": 24}
    assert settings.ae_title in started.peers  # the workbench receiver is always a peer
    state = json.loads((settings.data_dir / "sandbox" / "state.json").read_text())
    assert state["pid"] == started.pid and state["allow_get"] is True
    assert start_background(settings).pid == started.pid  # idempotent

    client = _client(settings)
    assert client.echo() == 0
    received: list[Dataset] = []
    server = store_scp(received, "LATECOMER")
    try:
        set_peers(settings, {"LATECOMER": ("127.0.0.1", server.server_address[1])})
        query = {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN0001"}
        status_code, _ = client.move(query, "LATECOMER", patient_root=True)
        assert status_code == 0x0000 and len(received) == 12
    finally:
        server.shutdown()

    assert stop_background(settings) is True
    after = status(settings)
    assert after is not None and not after.running and after.pid is None
    assert not port_open(settings.sandbox_port)
    assert "LATECOMER" in after.peers  # peers survive a restart
    assert stop_background(settings) is False


def test_start_without_get_then_restart_keeps_archive(sandbox_settings: Settings) -> None:
    settings = sandbox_settings
    started = start_background(settings, allow_get=False, peers={"X": ("127.0.0.1", 104)})
    assert started.allow_get is False and started.peers["X"] == ("127.0.0.1", 104)
    status_code, received = _client(settings).get(
        {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN0001"}, patient_root=True
    )
    assert status_code == 0x0124 and not received
    stop_background(settings)
    again = start_background(settings)
    assert again.allow_get is True and again.counts["instances"] == 24
    assert again.peers["X"] == ("127.0.0.1", 104)
    # Asking for other services restarts it; asking for the same ones does not.
    restarted = start_background(settings, allow_get=False)
    assert restarted.allow_get is False and restarted.pid != again.pid
    assert start_background(settings, allow_get=False).pid == restarted.pid


def test_port_taken_by_another_server_is_reported(sandbox_settings: Settings) -> None:
    settings = sandbox_settings
    with (
        SandboxPacs(settings.data_dir / "other", port=settings.sandbox_port),
        pytest.raises(SandboxError, match="already in use"),
    ):
        start_background(settings)


def test_start_failure_reports_log_tail(
    sandbox_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = sandbox_settings
    monkeypatch.setattr("adit_workbench.sandbox.process._port_open", lambda h, p: False)
    with (
        SandboxPacs(settings.data_dir / "other", port=settings.sandbox_port),
        pytest.raises(SandboxError) as info,
    ):
        start_background(settings)
    message = str(info.value)
    assert str(settings.sandbox_port) in message and "exited" in message
    assert "Traceback" in message  # the log tail shows why
    assert "SYN0001" not in message
    after = status(settings)
    assert after is not None and not after.running


def test_bad_peer_is_an_input_error(sandbox_settings: Settings) -> None:
    with pytest.raises(InputError):
        set_peers(sandbox_settings, {"X" * 17: ("127.0.0.1", 104)})
