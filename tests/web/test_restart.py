"""Clients ride out a restart of the service: ``wait()`` keeps polling and reconnects."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from adit_workbench.config import Settings
from adit_workbench.jobs import JobStatus
from adit_workbench.remote import RemoteWorkbench
from adit_workbench.store import Database
from tests.web.conftest import People, start_service, stop_service


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_wait_reconnects_across_a_service_restart(
    service_settings: Settings, database: Database, people: People, tmp_path: Path
) -> None:
    running = start_service(service_settings)
    port = urlsplit(running.url).port
    wb = RemoteWorkbench(running.url, people.token("alice"))
    hits = wb.node("SANDBOX").find_studies(patient_id="SYN*")
    job = wb.transfer(hits, to="OUT", pseudonym="RESTART")
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["status"] = job.wait(300, poll=0.1, progress=False).status
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    stop_service(running)  # the client now meets refused connections
    time.sleep(2)
    running = start_service(service_settings, port=port)
    waiter.join(300)
    try:
        assert outcome.get("status") is JobStatus.SUCCESS, outcome
        assert job.progress.finished == len(hits) == 6
        assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6 * 6
    finally:
        wb.close()
        stop_service(running)
