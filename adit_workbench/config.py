"""Settings: the one place that reads the environment.

Every option is an environment variable with the prefix ``ADIT_WB_`` (for example
``ADIT_WB_DATA_DIR``), or a line in a ``.env`` file in the working directory. Each field
carries its help text; ``adit-workbench config`` prints them all with secrets masked.

The defaults are the embedded set-up for one person on one machine: a SQLite database
in the data dir, no Redis (jobs run in-process), and a pseudonymization secret that is
generated on first use and kept with mode 0600 in the data dir.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError

__all__ = ["BurnedInPolicy", "Settings", "get_settings"]

_SECRET_BYTES = 32
_WINDOW = re.compile(r"\d{2}:\d{2}-\d{2}:\d{2}")
_CLOCK = re.compile(r"(\d{2}):(\d{2})")


class BurnedInPolicy(StrEnum):
    """What pseudonymization does with instances that may carry burned-in text."""

    REFUSE = "refuse"
    WARN = "warn"
    ALLOW = "allow"


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("adit-workbench", appauthor=False))


class Settings(BaseSettings):
    """All settings of adit_workbench (environment prefix ``ADIT_WB_``)."""

    model_config = SettingsConfigDict(
        env_prefix="ADIT_WB_", env_file=".env", extra="ignore", validate_default=True
    )

    # -- storage --------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder for the embedded database, the secret, the sandbox PACS and "
        "default outputs. Default: the user's data dir.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the database, e.g. "
        "postgresql+psycopg://user:pw@host/db. Default: SQLite file workbench.sqlite3 in "
        "the data dir (upgraded automatically).",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL for RQ workers, e.g. redis://127.0.0.1:6379/0. Unset: jobs "
        "run in-process (inline runner).",
    )
    secret_file: Path | None = Field(
        default=None,
        description="File holding the pseudonymization master secret. Default: secret.key "
        "in the data dir, created with mode 0600 on first use.",
    )
    operator: str | None = Field(
        default=None,
        description="Name the adit-workbench command signs in as on a shared (PostgreSQL) "
        "database, where the OS user ($USER) is refused. Set it only in the environment "
        "of the workbench service's account, beside the database URL; everyone else goes "
        "through the service (hub token or ADIT_WB_API_TOKEN).",
    )

    # -- the workbench's own DICOM identity ------------------------------------------
    ae_title: str = Field(
        default="ADIT_WB",
        max_length=16,
        description="AE title the workbench calls with and receives C-MOVE under.",
    )
    receiver_host: str = Field(
        default="127.0.0.1",
        description="Address the Store SCP receiver for C-MOVE listens on.",
    )
    receiver_port: int = Field(
        default=11112, ge=0, le=65535, description="Port of the Store SCP receiver for C-MOVE."
    )
    spool_max_age_hours: float = Field(
        default=24.0,
        gt=0,
        description="Hours an instance the receiver spooled may wait for its transfer "
        "before it is deleted (a transfer that gave up, a move nobody asked for).",
    )

    # -- network behaviour -----------------------------------------------------------
    connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a TCP connection or association."
    )
    dimse_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for one DIMSE response."
    )
    network_timeout: float = Field(
        default=60.0, gt=0, description="Seconds without network activity before giving up."
    )
    http_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for a DICOMweb (HTTP) response."
    )
    max_search_results: int = Field(
        default=1000, ge=1, description="Default cap on results of one query per node."
    )

    # -- sandbox PACS ----------------------------------------------------------------
    sandbox_ae_title: str = Field(
        default="SANDBOX", max_length=16, description="AE title of the embedded sandbox PACS."
    )
    sandbox_port: int = Field(
        default=11120, ge=0, le=65535, description="Port of the sandbox PACS on 127.0.0.1."
    )
    sandbox_patients: int = Field(
        default=10, ge=1, description="Synthetic patients seeded into a new sandbox PACS."
    )

    # -- pseudonymization ------------------------------------------------------------
    burned_in_policy: BurnedInPolicy = Field(
        default=BurnedInPolicy.REFUSE,
        description="Instances that may carry burned-in text: refuse, warn or allow.",
    )
    pseudonym_prefix: str = Field(
        default="WB", description="Prefix of pseudonyms derived from the secret."
    )
    pseudonym_length: int = Field(
        default=10, ge=6, le=40, description="Length of the derived part of a pseudonym."
    )
    date_shift_days: int = Field(
        default=365,
        ge=1,
        description="Modified-dates option: dates move by up to this many days, per patient.",
    )

    # -- jobs ------------------------------------------------------------------------
    smtp_host: str = Field(
        default="127.0.0.1", description="SMTP server for the 'job finished' mail."
    )
    smtp_port: int = Field(
        default=0, ge=0, le=65535, description="SMTP port; 0 turns the finished mail off."
    )
    smtp_from: str = Field(
        default="adit-workbench@localhost", description="Sender address of the finished mail."
    )
    mail_domain: str = Field(
        default="localhost",
        description="Domain added to a user name that is not a mail address (alice → "
        "alice@DOMAIN).",
    )
    time_windows: dict[str, str] = Field(
        default_factory=dict,
        description="Hours in which tasks may run, per job kind or node name, as JSON, e.g. "
        '{"mass_transfer": "18:00-07:00", "PACS": "20:00-06:00"} (local time). Tasks '
        "outside their window wait without spending an attempt.",
    )

    # -- the workbench service (multi-user) ------------------------------------------
    service_url: str | None = Field(
        default=None,
        description="URL of the workbench service, e.g. https://hub.example.org/services/"
        "workbench/. Set together with ADIT_WB_API_TOKEN (or inside a JupyterHub user "
        "server), connect() returns a client of the service that holds no database, "
        "secret or PACS connection itself.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Workbench API token (awb_...) or JupyterHub token sent to the service "
        "at ADIT_WB_SERVICE_URL. Create one with 'adit-workbench tokens create'.",
    )
    auth_cache_seconds: int = Field(
        default=60,
        ge=1,
        le=60,
        description="Seconds the workbench service may reuse JupyterHub's answer about a "
        "hub token, a user's hub groups and admin flag (1-60). A user removed from the hub, "
        "or from a hub group, is refused (or loses what the group gave) at most this long "
        "after the change; a shorter time asks the hub more often.",
    )
    max_request_mb: float = Field(
        default=20.0,
        gt=0,
        description="The service refuses request bodies (batch files included) larger than "
        "this many megabytes with HTTP 413.",
    )
    max_stow_mb: float = Field(
        default=4000.0,
        gt=0,
        description="The service refuses a DICOMweb STOW-RS request body larger than this "
        "many megabytes with HTTP 413, counted while it streams in (a declared "
        "Content-Length above it is refused at once); nothing of a refused body is stored. "
        "STOW bodies are spooled to the data folder part by part, so memory does not grow "
        "with them; ADIT_WB_MAX_REQUEST_MB caps every other request body.",
    )

    # -- logging ---------------------------------------------------------------------
    log_level: str = Field(default="WARNING", description="Log level of the package logger.")

    @field_validator("time_windows")
    @classmethod
    def _check_time_windows(cls, value: dict[str, str]) -> dict[str, str]:
        for key, window in value.items():
            if not _WINDOW.fullmatch(window):
                raise ValueError(f"window for {key!r} is not HH:MM-HH:MM")
            if any(int(h) > 23 or int(m) > 59 for h, m in _CLOCK.findall(window)):
                raise ValueError(f"window for {key!r} has an impossible time of day")
        return value

    @field_validator("ae_title", "sandbox_ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        if not value.strip() or "\\" in value or not value.isascii():
            raise ValueError("an AE title is 1-16 ASCII characters without backslash")
        return value.strip()

    # -- derived values --------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """The database URL in use (the embedded SQLite file when none is set)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'workbench.sqlite3'}"

    @property
    def is_embedded_database(self) -> bool:
        """True when the database is the default SQLite file in the data dir."""
        return self.database_url is None

    def ensure_data_dir(self) -> Path:
        """Create the data dir (mode 0700) if needed and return it."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigurationError(f"cannot create data dir {self.data_dir}: {exc}") from exc
        return self.data_dir

    @property
    def secret_path(self) -> Path:
        """Where the master secret is: ``secret_file``, else ``secret.key`` in the data
        folder (which :meth:`master_secret` creates on first use)."""
        return self.secret_file or self.data_dir / "secret.key"

    def master_secret(self) -> bytes:
        """The pseudonymization master secret, generated on first use.

        The file holds hex text; it is created atomically with mode 0600 so that a
        concurrent first use by several threads or processes ends with one secret.
        """
        path = self.secret_file or self.ensure_data_dir() / "secret.key"
        if not path.exists():
            # mkstemp: a unique name per call (threads share a pid) and mode 0600.
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            tmp = Path(tmp_name)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(_SECRET_BYTES) + "\n")
            try:
                os.link(tmp, path)  # fails if another thread or process won the race
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        try:
            text = path.read_text().strip()
            return bytes.fromhex(text)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"secret file {path} is unreadable or not hex") from exc

    def describe(self) -> Iterator[tuple[str, str, str]]:
        """Yield ``(ENV_VAR, effective value with secrets masked, help)`` per setting."""
        for name, field in type(self).model_fields.items():
            value: Any = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = _mask_url(value.get_secret_value())
            elif value is None and name == "database_url":
                shown = f"(embedded) {self.effective_database_url}"
            elif value is None and name == "secret_file":
                shown = f"(default) {self.data_dir / 'secret.key'}"
            elif isinstance(value, Enum):
                shown = str(value.value)
            elif isinstance(value, dict):
                shown = json.dumps(value) if value else ""
            else:
                shown = "" if value is None else str(value)
            yield f"ADIT_WB_{name.upper()}", shown, field.description or ""


def _mask_url(url: str) -> str:
    """Mask the password of a URL (``scheme://user:***@host``), or all of a bare secret."""
    if "://" not in url:
        return "***"
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in cred else f"{scheme}://{user}@{host}"
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process from the environment (tests clear the cache)."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc
