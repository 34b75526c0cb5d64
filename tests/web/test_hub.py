"""A real JupyterHub running the workbench service as a managed service.

In a user's kernel, ``aw.connect()`` finds the service through the hub, authenticates
with the server's own hub token and returns the remote workbench: the notebook cell
query → transfer → ``job.wait()`` runs there while the kernel's environment holds no
database URL, Redis URL or secret and nothing is written to its data dir. The service
reads the user's hub groups itself; a user of another group is refused the node.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

import tests.servers.jupyterhub as hub_fixture
from adit_workbench.access import Identity, IdentitySource, Permission, sign_in
from adit_workbench.config import Settings
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.jobs.local import stop_worker
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from tests.servers._util import free_port
from tests.servers.jupyterhub import REPO, VENV_BIN, Hub

pytestmark = pytest.mark.slow

SERVICE_CONFIG = """
c.JupyterHub.services.append({{
    "name": "workbench",
    "url": "http://127.0.0.1:{port}",
    "command": {command!r},
    "environment": {environment!r},
    "oauth_no_confirm": True,
}})
c.JupyterHub.load_roles.append({{
    "name": "workbench-users",
    "scopes": ["access:services!service=workbench", "read:services!service=workbench"],
    "groups": ["researchers", "visitors"],
}})
c.JupyterHub.load_roles.append({{
    "name": "workbench-service", "scopes": ["read:users", "read:groups"],
    "services": ["workbench"],
}})
c.Spawner.server_token_scopes = [
    "access:servers!server", "users:activity!user",
    "access:services!service=workbench", "read:services!service=workbench",
]
"""

KERNEL_CODE = """
import json, os, pathlib
import adit_workbench as aw
from adit_workbench.errors import WorkbenchError
out = {"env": sorted(k for k in os.environ if k.startswith("ADIT_WB_"))}
wb = aw.connect()
out["type"], out["user"] = type(wb).__name__, wb.user
try:
    hits = wb.node("SANDBOX").find_studies(patient_id="SYN0001", modality="CT")
    out["hits"], out["series"] = len(hits), len(hits[0].series())
    job = wb.transfer(hits, to="OUT", pseudonym="HUB-01").wait(120, progress=False)
    out["status"] = job.status.value
except WorkbenchError as exc:
    out["error"] = type(exc).__name__
out["data_dir_exists"] = pathlib.Path(os.environ["ADIT_WB_DATA_DIR"]).exists()
print(json.dumps(out))
"""


def _prepare_database(url: str, pacs: SandboxPacs, out: Path) -> Database:
    database = Database(url)
    database.upgrade()
    caps = Capabilities(patient_root_find=True, study_root_find=True, study_root_get=True,
                        patient_root_get=True)  # fmt: skip
    with database.session() as session:
        node_store.add_server(
            session, ServerSpec("SANDBOX", "SANDBOX", "127.0.0.1", pacs.port, capabilities=caps)
        )
        node_store.add_folder(session, FolderSpec("OUT", out))
    admin = sign_in(database, Identity("boss", IdentitySource.LOCAL), embedded=False)
    admin.admin.grant("researchers", "SANDBOX", source=True)
    admin.admin.grant("researchers", "OUT", destination=True)
    admin.admin.add_permission("researchers", Permission.SELECTIVE_TRANSFER)
    return database


def _browser_login(hub: Hub, user: str) -> dict[str, Any]:
    """Log in at the hub as a browser does, then open the service: OAuth, then its cookie."""
    browser = requests.Session()
    browser.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = browser.cookies.get("_xsrf", "")
    browser.post(f"{hub.url}/hub/login?_xsrf={xsrf}", timeout=30,
                 data={"username": user, "password": "any", "_xsrf": xsrf})  # fmt: skip
    landed = browser.get(f"{hub.url}/services/workbench/login", timeout=60)
    assert landed.status_code == 200 and landed.url.endswith("/services/workbench/docs")
    me = browser.get(f"{hub.url}/services/workbench/api/me", timeout=30)
    assert me.status_code == 200, me.text
    return dict(me.json())


def _run(hub: Hub, user: str) -> dict[str, Any]:
    hub.spawn(user)
    out, _ = hub.run_in_kernel(user, KERNEL_CODE)
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_kernels_are_clients_of_the_hub_service(
    start_jupyterhub: Callable[..., Hub],
    pacs: SandboxPacs,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    service_dir = tmp_path / "service"
    service_dir.mkdir()
    # The service runs jobs in its local worker, a session of its own that outlives the hub.
    request.addfinalizer(lambda: stop_worker(Settings(data_dir=service_dir), timeout=10))
    (tmp_path / "out").mkdir()
    database = _prepare_database(
        f"sqlite:///{service_dir / 'workbench.sqlite3'}", pacs, tmp_path / "out"
    )
    port = free_port()
    extra = SERVICE_CONFIG.format(
        port=port,
        command=[sys.executable, "-m", "adit_workbench", "serve"],
        environment={
            "ADIT_WB_DATA_DIR": str(service_dir),
            "PYTHONPATH": str(REPO),
            "PATH": str(VENV_BIN),
        },
    )
    monkeypatch.setattr(hub_fixture, "_CONFIG", hub_fixture._CONFIG + extra)
    # The hub starts one more process here; on a loaded machine 30 s is not enough for both.
    patient = hub_fixture.wait_until
    monkeypatch.setattr(
        hub_fixture,
        "wait_until",
        lambda check, timeout, *args, **kwargs: patient(check, max(timeout, 120), *args, **kwargs),
    )
    kernel_data = tmp_path / "kernel-data"
    hub = start_jupyterhub(
        {"researchers": ["alice"], "visitors": ["bob"]},
        environment={"ADIT_WB_DATA_DIR": str(kernel_data)},
    )
    alice = _run(hub, "alice")
    assert alice["type"] == "RemoteWorkbench" and alice["user"] == "alice"
    assert alice["env"] == ["ADIT_WB_DATA_DIR"]  # no database, Redis or secret setting
    assert (alice.get("hits"), alice.get("series"), alice.get("status")) == (1, 2, "SUCCESS")
    assert not alice["data_dir_exists"], "the client wrote to its data dir"
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6

    bob = _run(hub, "bob")
    assert bob["type"] == "RemoteWorkbench" and bob["error"] == "NodeAccessDenied"

    assert _browser_login(hub, "alice")["user"] == "alice"

    groups = {u.name: u.groups for u in sign_in(
        database, Identity("boss", IdentitySource.LOCAL), embedded=False
    ).admin.users()}  # fmt: skip
    assert groups["alice"] == ("researchers",) and groups["bob"] == ("visitors",)
    database.dispose()
