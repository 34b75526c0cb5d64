"""What every command needs: the workbench for the current settings, argument types
with bounds, and output that cannot attack the terminal reading it.

Nothing heavy is imported here or at the top of any command module: ``adit-workbench
--help`` and simple commands must not pay for pandas, SQLAlchemy and pydicom (see
``bench/cli.py``). Commands import what they use inside their function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..workbench import Workbench

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


@lru_cache(maxsize=1)
def _cached() -> Workbench:
    from ..workbench import connect_local as connect

    return connect()


def open_workbench() -> Workbench:
    """The workbench of this CLI run (opened once, database upgraded if embedded)."""
    return _cached()


def reset() -> None:
    """Close and forget the workbench of this run.

    Closing matters: an open association keeps a pynetdicom thread alive, and the
    process would linger until the peer's network timeout ends it.
    """
    if _cached.cache_info().currsize:
        _cached().close()
    _cached.cache_clear()
