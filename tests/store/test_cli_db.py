"""``adit-workbench db upgrade`` and ``db current`` on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from adit_workbench.cli import main
from adit_workbench.config import get_settings
from adit_workbench.store import Database


@pytest.fixture
def configured(database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """ADIT_WB_DATABASE_URL pointing at this test's database."""
    monkeypatch.setenv("ADIT_WB_DATABASE_URL", database_url)
    get_settings.cache_clear()
    return database_url


def test_db_current_upgrade_current(configured: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = Database(configured).head_revision()

    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out
    assert "(empty)" in out and "db upgrade" in out

    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    assert f"(empty) -> {head}" in out

    assert main(["db", "upgrade"]) == 0
    assert f"already at {head}" in capsys.readouterr().out

    assert main(["db", "current"]) == 0
    out = capsys.readouterr().out
    assert f"{head} (head)" in out
    assert "wb-test-pw" not in out  # the PostgreSQL fixture's password


def test_db_upgrade_embedded(settings: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert "workbench.sqlite3" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert "(head)" in capsys.readouterr().out


def test_db_unreachable_exits_1(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.servers._util import free_port

    url = f"postgresql+psycopg://u:hidden-pw@127.0.0.1:{free_port()}/x?connect_timeout=2"
    monkeypatch.setenv("ADIT_WB_DATABASE_URL", url)
    get_settings.cache_clear()
    assert main(["db", "current"]) == 1
    err = capsys.readouterr().err
    assert "failed" in err and "hidden-pw" not in err
