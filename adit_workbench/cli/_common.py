"""What every command needs: the workbench for the current settings."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..workbench import Workbench


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
