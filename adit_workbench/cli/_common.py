"""What every command needs: the workbench for the current settings."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..workbench import Workbench


@lru_cache(maxsize=1)
def _cached() -> Workbench:
    from ..workbench import connect

    return connect()


def open_workbench() -> Workbench:
    """The workbench of this CLI run (opened once, database upgraded if embedded)."""
    return _cached()


def reset() -> None:
    """Forget the cached workbench (tests run several commands in one process)."""
    _cached.cache_clear()
