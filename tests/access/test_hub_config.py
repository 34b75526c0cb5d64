"""The shipped jupyter_config/jupyterhub_config.py loads and says what the README promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_DIR = Path(__file__).resolve().parents[2] / "jupyter_config"


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Config:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(CONFIG_DIR)).load_config()


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_DB_URL", raising=False)
    monkeypatch.delenv("ADIT_WB_HUB_DICOMWEB", raising=False)
    config = _load(monkeypatch, ADIT_WB_DATABASE_URL="postgresql://wb@db/wb")
    assert config.JupyterHub.db_url == "sqlite:///jupyterhub.sqlite"
    assert {"radiology", "research-students", "dashboard-users"} <= set(
        config.JupyterHub.load_groups
    )
    assert config.Spawner.environment["ADIT_WB_DATABASE_URL"] == "postgresql://wb@db/wb"
    assert Path(config.Spawner.cmd[0]).name == "jupyterhub-singleuser"
    assert config.JupyterHub.services == []


def test_postgresql_and_dicomweb_service(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load(
        monkeypatch,
        JUPYTERHUB_DB_URL="postgresql://jhub:pw@db/jupyterhub",
        ADIT_WB_HUB_DICOMWEB="1",
    )
    assert config.JupyterHub.db_url == "postgresql+psycopg://jhub:pw@db/jupyterhub"
    [service] = config.JupyterHub.services
    assert service["name"] == "dicomweb" and service["oauth_no_confirm"]
    [role] = config.JupyterHub.load_roles
    assert role["scopes"] == ["access:services!service=dicomweb"]
