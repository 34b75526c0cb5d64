"""Fixtures for the browser tests: a workbench site, Voilà serving dashboards/ on a free
port, and Debian's Chromium driven by Playwright (its own browser download never runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers._util import free_port, port_open, require, stop_process, wait_until
from tests.widgets.site import RESEARCHER, Site, workbench_site

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
#: Where the tests write their screenshots (one per dashboard is copied to docs/screenshots).
SHOTS = (
    Path(os.environ.get("ADIT_WB_SCREENSHOT_DIR", ""))
    if os.environ.get("ADIT_WB_SCREENSHOT_DIR")
    else None
)


@dataclass
class Voila:
    """A running Voilà: its base URL and the user its kernels act for."""

    url: str
    user: str
    log: Path

    def page_url(self, dashboard: str) -> str:
        return f"{self.url}/voila/render/{dashboard}.ipynb"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with workbench_site(tmp_path_factory.mktemp("dashboards")) as made:
        yield made


def _start_voila(site: Site, root: Path, user: str | None) -> Iterator[Voila]:
    voila = require(str(Path(sys.executable).with_name("voila")), "the jupyter extra (voila)")
    port = free_port()
    env = dict(os.environ)
    env.update(site.env)
    # The kernels import this tree (a worktree may differ from the installed package).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if user is not None:  # the local identity is the OS user name the kernel sees
        env["USER"] = env["LOGNAME"] = user
    name = user or "admin"
    log = root / f"voila-{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [voila, str(REPO / "dashboards"), "--no-browser", f"--port={port}",
             f"--Voila.config_file_paths={REPO / 'jupyter_config'}"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), 60, "voila", proc, log)
        yield Voila(f"http://127.0.0.1:{port}", user or "admin", log)
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def voila(site: Site) -> Iterator[Voila]:
    """Voilà whose kernels act for the site's admin."""
    yield from _start_voila(site, site.root, None)


@pytest.fixture(scope="module")
def voila_researcher(site: Site) -> Iterator[Voila]:
    """Voilà whose kernels act for the non-admin researcher."""
    yield from _start_voila(site, site.root, RESEARCHER)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require(CHROMIUM, "the Debian chromium package")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1300, "height": 700})
    context.set_default_timeout(60_000)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def shot(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any, str], Path]:
    """Save a full-page screenshot ``name``.png (in ADIT_WB_SCREENSHOT_DIR when set)."""
    folder = SHOTS or tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
