"""Shared fixtures. Real servers live in tests/servers/ and are loaded as plugins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adit_workbench.config import Settings, get_settings

pytest_plugins = [
    "tests.servers.jupyterhub",
    "tests.servers.orthanc",
    "tests.servers.postgres",
    "tests.servers.redis",
]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ADIT_WB_DATA_DIR for one test; settings re-read from the environment."""
    path = tmp_path / "data"
    monkeypatch.setenv("ADIT_WB_DATA_DIR", str(path))
    for var in ("ADIT_WB_DATABASE_URL", "ADIT_WB_REDIS_URL", "ADIT_WB_SECRET_FILE"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield path
    if (path / "worker").exists():  # a job started the local worker: it goes with the test
        from adit_workbench.jobs.local import stop_worker

        get_settings.cache_clear()
        stop_worker(get_settings(), timeout=10)
    get_settings.cache_clear()


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return get_settings()
