"""Settings: environment prefix, defaults, the generated secret and `config` masking."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adit_workbench.cli import main
from adit_workbench.config import Settings, get_settings
from adit_workbench.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_embedded(settings: Settings, data_dir: Path) -> None:
    assert settings.data_dir == data_dir
    assert settings.is_embedded_database
    assert settings.effective_database_url == f"sqlite:///{data_dir / 'workbench.sqlite3'}"
    assert settings.redis_url is None


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("ADIT_WB_AE_TITLE", "MY_AE")
    monkeypatch.setenv("ADIT_WB_RECEIVER_PORT", "4000")
    get_settings.cache_clear()
    settings = get_settings()
    assert (settings.ae_title, settings.receiver_port) == ("MY_AE", 4000)


def test_invalid_setting_names_the_field(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("ADIT_WB_RECEIVER_PORT", "not-a-port")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="receiver_port"):
        get_settings()


def test_every_field_has_help_text() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 15, name


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"ADIT_WB_{n.upper()}"
        for n in Settings.model_fields
        if f"ADIT_WB_{n.upper()}" not in readme
    ]
    assert not missing


def test_secret_generated_once_with_mode_0600(settings: Settings) -> None:
    first = settings.master_secret()
    path = settings.data_dir / "secret.key"
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.master_secret() == first


def test_secret_same_across_processes(settings: Settings, data_dir: Path) -> None:
    code = (
        "from adit_workbench.config import get_settings; "
        "print(get_settings().master_secret().hex())"
    )
    env = {**os.environ, "ADIT_WB_DATA_DIR": str(data_dir)}
    runs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = {proc.communicate()[0].strip() for proc in runs}
    assert outputs == {settings.master_secret().hex()}


def test_secret_same_across_threads(settings: Settings) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        secrets = set(pool.map(lambda _: settings.master_secret(), range(32)))
    assert len(secrets) == 1
    assert [p.name for p in settings.data_dir.iterdir() if p.name.startswith(".")] == []


def test_config_command_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADIT_WB_DATABASE_URL", "postgresql+psycopg://wb:hunter2@db.example/wb")
    monkeypatch.setenv("ADIT_WB_REDIS_URL", "redis://:s3cret@127.0.0.1:6379/0")
    get_settings.cache_clear()
    secret = get_settings().master_secret().hex()
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "s3cret" not in out and secret not in out
    assert "postgresql+psycopg://wb:***@db.example/wb" in out
    assert "ADIT_WB_DATA_DIR" in out


def test_cli_usage_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--no-such-option"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--no-such-option" in err


def test_time_windows_are_validated(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("ADIT_WB_TIME_WINDOWS", '{"mass_transfer": "18:00-07:00"}')
    get_settings.cache_clear()
    assert get_settings().time_windows == {"mass_transfer": "18:00-07:00"}
    monkeypatch.setenv("ADIT_WB_TIME_WINDOWS", '{"PACS": "25:00-07:00"}')
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="PACS"):
        get_settings()
