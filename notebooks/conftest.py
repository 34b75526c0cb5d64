"""nbval runs these notebooks on the embedded defaults in a temporary data folder.

nbval's cells are not pytest functions, so fixtures do not reach them; the environment
the kernel inherits is set before the first notebook's kernel starts (a collector's setup
runs inside the first item's ``pytest_runtest_setup``, after this hook).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_prepared: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _prepared or HERE not in Path(str(item.path)).resolve().parents:
        return
    _prepared.update(
        ADIT_WB_DATA_DIR=tempfile.mkdtemp(prefix="aw-notebooks-"),
        ADIT_WB_SANDBOX_PORT=str(_free_port()),
        ADIT_WB_RECEIVER_PORT=str(_free_port()),
        ADIT_WB_SANDBOX_PATIENTS="3",
    )
    os.environ.update(_prepared)
    for var in ("ADIT_WB_DATABASE_URL", "ADIT_WB_REDIS_URL", "ADIT_WB_SECRET_FILE"):
        os.environ.pop(var, None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop a sandbox a failed notebook left running."""
    if not _prepared:
        return
    from adit_workbench.config import Settings
    from adit_workbench.sandbox import process

    data_dir = Path(_prepared["ADIT_WB_DATA_DIR"])
    process.stop_background(Settings(data_dir=data_dir))
    shutil.rmtree(data_dir, ignore_errors=True)
