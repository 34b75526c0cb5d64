"""``aw.connect()`` picks the remote workbench when a service is configured, and
``adit-workbench serve`` runs on the embedded defaults, under a hub's service prefix too."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import adit_workbench as aw
from adit_workbench.cli.serve import hub_service_environment
from adit_workbench.config import get_settings
from adit_workbench.remote import RemoteWorkbench, service_address
from adit_workbench.workbench import Workbench
from tests.servers._util import free_port, wait_until
from tests.web.conftest import People, Running

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_connect_with_service_settings_is_remote_and_writes_nothing(
    service: Running, people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_dir = tmp_path / "client-data"
    monkeypatch.setenv("ADIT_WB_DATA_DIR", str(client_dir))
    monkeypatch.setenv("ADIT_WB_SERVICE_URL", service.url)
    monkeypatch.setenv("ADIT_WB_API_TOKEN", people.token("alice"))
    get_settings.cache_clear()
    wb = aw.connect()
    assert isinstance(wb, RemoteWorkbench) and wb.user == "alice"
    assert len(wb.node("SANDBOX").find_studies(patient_id="SYN0001")) == 2
    wb.close()
    assert not client_dir.exists(), "the remote client created its data dir"
    monkeypatch.delenv("ADIT_WB_API_TOKEN")
    get_settings.cache_clear()
    assert service_address(get_settings(), environ={}) is None


def test_connect_without_service_is_local(data_dir: Path) -> None:
    with aw.connect() as wb:
        assert isinstance(wb, Workbench)


def test_hub_service_environment() -> None:
    found = hub_service_environment(
        {
            "JUPYTERHUB_API_TOKEN": "t",
            "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10101",
            "JUPYTERHUB_SERVICE_PREFIX": "/services/workbench/",
        }
    )
    assert found == {"hub": True, "host": "127.0.0.1", "port": 10101,
                     "prefix": "/services/workbench/"}  # fmt: skip
    assert hub_service_environment({}) == {"hub": False}


def test_serve_command_on_the_embedded_defaults(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADIT_WB_", "JUPYTERHUB_"))}
    env.update(ADIT_WB_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO),
               JUPYTERHUB_SERVICE_PREFIX="/services/workbench/")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "adit_workbench", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/services/workbench"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{base}/api/health", timeout=1).status == 200,
                   30, "adit-workbench serve", proc=proc)  # fmt: skip
        with urllib.request.urlopen(f"{base}/openapi.json", timeout=5) as response:
            assert b'"/services/workbench/api/nodes"' in response.read()
        assert (tmp_path / "data" / "workbench.sqlite3").exists()
    finally:
        proc.terminate()
        proc.wait(20)
