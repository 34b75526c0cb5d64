"""Fixtures for the widget tests: one workbench site per module (sandbox PACS, OUT)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from .site import Site, workbench_site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with workbench_site(tmp_path_factory.mktemp("widgets")) as made:
        yield made


def eventually(check: Callable[[], object], timeout: float = 60, what: str = "") -> None:
    """Wait for a background thread's effect on a widget."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s: {what}")
