"""What every command needs: the workbench for the current settings, argument types
with bounds, and output that cannot attack the terminal reading it.

Which workbench: :func:`open_workbench` is :func:`adit_workbench.workbench.connect`'s. With
``ADIT_WB_SERVICE_URL`` and a token (``ADIT_WB_API_TOKEN``, or the hub server's own), every
user-level command is a client of the workbench service, which checks the caller's
permissions exactly as for a notebook or the REST API; the CLI then opens no database and
reads no secret. Commands that only make sense where the database is (``db``, ``serve``,
``hub``, ``sandbox``, ``worker``) are marked :func:`service_host_only`: on a client (the
service URL set, no database configured) they stop with one line and exit code 2.

Nothing heavy is imported here or at the top of any command module: ``adit-workbench
--help`` and simple commands must not pay for pandas, SQLAlchemy and pydicom (see
``bench/cli.py``). Commands import what they use inside their function.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..config import Settings
    from ..remote import RemoteWorkbench
    from ..workbench import Workbench

F = TypeVar("F", bound=Callable[..., Any])

#: Database ids: positive and within SQL's BIGINT (2**63 would end in an OverflowError).
ID = click.IntRange(1, 2**63 - 1)
#: C0 and C1 controls, DEL, and the bidi/format characters that reorder or hide text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean(value: object, *, keep_lines: bool = False) -> str:
    """``value`` as text safe for a terminal: control and format characters become
    ``?`` (line breaks and tabs a space, or kept with ``keep_lines``), so a
    StudyDescription or a token description cannot move the cursor, retitle the window
    or hide text."""
    text = "" if value is None else str(value)
    if keep_lines:
        return "\n".join(clean(line) for line in text.split("\n"))
    return _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "?", text)


def echo_table(rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` (the first is the header) as aligned columns, every cell cleaned."""
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def clean_frame(frame: Any) -> Any:
    """A copy of a DataFrame whose text cells are :func:`clean`."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype.kind not in "biufcmM":  # object, str, "string", category …
            out[column] = out[column].map(lambda v: clean(v) if isinstance(v, str) else v)
    out.columns = [clean(c) for c in out.columns]
    return out


class LazyChoice(click.Choice):
    """A :class:`click.Choice` whose choices come from a module imported on first use,
    so that defining the command does not import it."""

    def __init__(self, load: Callable[[], Iterable[str]], case_sensitive: bool = True) -> None:
        super().__init__([], case_sensitive=case_sensitive)
        self._load = load
        self._loaded: list[str] | None = None

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        if self._loaded is None:
            self._loaded = list(self._load())
        return self._loaded

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        self._loaded = list(value) if value else None


class ServiceHostOnly(click.ClickException):
    """A command that needs the database, run where only the service URL is configured."""

    exit_code = 2


class NoServiceToken(click.ClickException):
    """The service URL is set but nothing to show the service who is calling."""

    exit_code = 2


def is_service_client(settings: Settings | None = None) -> bool:
    """Whether this CLI is a client of the workbench service: the service URL is set (or a
    hub server's service is found) and no database is configured here."""
    from ..config import get_settings
    from ..remote.discover import service_address

    settings = settings or get_settings()
    if settings.database_url is not None:
        return False
    return settings.service_url is not None or service_address(settings) is not None


def service_host_only(func: F) -> F:
    """Mark a command that needs the database (or runs the service's own processes): on a
    service client it stops with one line, exit code 2, before touching anything."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if is_service_client():
            ctx = click.get_current_context(silent=True)
            name = ctx.command_path if ctx is not None else "this command"
            raise ServiceHostOnly(
                f"'{name}' runs on the workbench service's host (ADIT_WB_SERVICE_URL is set "
                "and no ADIT_WB_DATABASE_URL): ask its administrator"
            )
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def is_remote(wb: object) -> bool:
    """Whether ``wb`` is a client of the workbench service (without importing the client
    when it is not)."""
    module = sys.modules.get("adit_workbench.remote.workbench")
    return module is not None and isinstance(wb, module.RemoteWorkbench)


def refuse_on_service(what: str) -> None:
    """Stop with one line (exit 2) if ``what`` is asked of the service, which offers no
    such operation; a no-op on the local workbench."""
    if is_remote(open_workbench()):
        raise ServiceHostOnly(f"{what} is not offered by the workbench service")


@lru_cache(maxsize=1)
def _cached() -> Workbench | RemoteWorkbench:
    from ..config import get_settings
    from ..remote.discover import service_address

    settings = get_settings()
    address = service_address(settings)
    if settings.database_url is None and settings.service_url is not None and address is None:
        # Without a token connect() would fall back to an empty embedded workbench as the
        # OS user: never what someone who configured the service meant.
        raise NoServiceToken(
            "ADIT_WB_SERVICE_URL is set but no token: set ADIT_WB_API_TOKEN to a workbench "
            "API token (a JupyterHub terminal has its server's own)"
        )
    if address is None:
        from ..workbench import connect_local

        return connect_local(settings)
    from ..remote.workbench import RemoteWorkbench

    return RemoteWorkbench(*address, settings=settings)  # connect()'s, asking the hub once


def open_workbench() -> Any:
    """The workbench of this CLI run, opened once: a client of the workbench service when
    one is configured (see the module's docstring), else the local one (database upgraded
    if embedded). Typed ``Any``: both offer what the commands call
    (:class:`~adit_workbench.workbench.WorkbenchAPI` and more)."""
    return _cached()


def reset() -> None:
    """Close and forget the workbench of this run.

    Closing matters: an open association keeps a pynetdicom thread alive, and the
    process would linger until the peer's network timeout ends it.
    """
    if _cached.cache_info().currsize:
        _cached().close()
    _cached.cache_clear()
