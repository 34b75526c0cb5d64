"""A lock file per folder, shared by the detached processes one data dir may hold.

The sandbox PACS and the local job worker are each started on demand by whichever
kernel or command needs them first; two notebooks pressing start at once must not start
two. Both take this lock around start, stop and idle exit. It sits at the top of the
layer table so that ``sandbox/`` and ``jobs/`` share it without importing each other.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

__all__ = ["folder_lock"]


@contextlib.contextmanager
def folder_lock(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` exclusively (the folder is created private if missing)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
