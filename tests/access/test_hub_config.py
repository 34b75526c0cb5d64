"""The shipped jupyter_config/jupyterhub_config.py loads and draws the trust boundary:
user servers get only the service URL; the service and the workers get the rest.

The same file runs under a real JupyterHub in test_hub_boundary.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_DIR = Path(__file__).resolve().parents[2] / "jupyter_config"

SECRET_SETTINGS = {
    "ADIT_WB_DATABASE_URL": "postgresql://wb_service:db-pw-123@db/wb",
    "ADIT_WB_REDIS_URL": "redis://:redis-pw-456@127.0.0.1:6379/0",
}


def _load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Config:
    monkeypatch.setenv("ADIT_WB_DATA_DIR", str(tmp_path / "wb-data"))
    monkeypatch.delenv("ADIT_WB_SECRET_FILE", raising=False)
    monkeypatch.delenv("ADIT_WB_HUB_SERVICE_USER", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(CONFIG_DIR)).load_config()


def test_user_servers_get_only_the_service_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JUPYTERHUB_DB_URL", raising=False)
    config = _load(monkeypatch, tmp_path, **SECRET_SETTINGS)
    assert config.JupyterHub.db_url == "sqlite:///jupyterhub.sqlite"
    assert {"radiology", "research-students", "dashboard-users"} <= set(
        config.JupyterHub.load_groups
    )
    assert config.Spawner.environment == {
        "ADIT_WB_SERVICE_URL": "http://127.0.0.1:8000/services/workbench/"
    }
    assert "access:services!service=workbench" in config.Spawner.server_token_scopes
    assert Path(config.Spawner.cmd[0]).name == "jupyterhub-singleuser"
    # Nothing secret in anything the spawner passes on.
    assert not [k for k in config.Spawner.env_keep if k.startswith(("ADIT_WB_", "REDIS", "PG"))]


def test_service_and_two_workers_hold_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = _load(
        monkeypatch,
        tmp_path,
        JUPYTERHUB_DB_URL="postgresql://jhub:pw@db/jupyterhub",
        ADIT_WB_HUB_SERVICE_PORT="10222",
        **SECRET_SETTINGS,
    )
    assert config.JupyterHub.db_url == "postgresql+psycopg://jhub:pw@db/jupyterhub"
    services = {s["name"]: s for s in config.JupyterHub.services}
    assert set(services) == {"workbench", "workbench-worker-1", "workbench-worker-2"}
    service = services["workbench"]
    assert service["url"] == "http://127.0.0.1:10222"
    assert service["command"][1:] == ["serve", "--host", "127.0.0.1", "--port", "10222"]
    assert Path(service["command"][0]).name == "adit-workbench"
    assert services["workbench-worker-1"]["command"][1] == "worker"
    secret = tmp_path / "wb-data" / "secret.key"
    for spec in services.values():
        environment = spec["environment"]
        assert environment["ADIT_WB_DATABASE_URL"] == SECRET_SETTINGS["ADIT_WB_DATABASE_URL"]
        assert environment["ADIT_WB_REDIS_URL"] == SECRET_SETTINGS["ADIT_WB_REDIS_URL"]
        assert environment["ADIT_WB_SECRET_FILE"] == str(secret)
        assert not [k for k in environment if k.startswith("ADIT_WB_HUB_")]
    # The secret exists before any user's server starts, readable by its owner only.
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    [role] = config.JupyterHub.load_roles
    assert role["name"] == "user"
    assert "access:services!service=workbench" in role["scopes"] and "self" in role["scopes"]


def test_no_workers_without_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ADIT_WB_REDIS_URL", raising=False)
    monkeypatch.delenv("ADIT_WB_HUB_WORKERS", raising=False)
    config = _load(monkeypatch, tmp_path)
    assert [s["name"] for s in config.JupyterHub.services] == ["workbench"]
