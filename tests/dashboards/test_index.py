"""The landing page of dashboard users: the dashboards their permissions allow, as links.

Rendered by Voilà in headless Chromium for the admin and for the researcher (three app
permissions); the hub sends members of ``dashboard-users`` there instead of JupyterLab.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from traitlets.config.loader import PyFileConfigLoader

from tests.widgets.site import RESEARCHER_PERMISSIONS

from .conftest import REPO, Voila

pytestmark = pytest.mark.slow

Shot = Callable[[Any, str], Path]
EVERY = {
    "selective_transfer",
    "batch_query",
    "batch_transfer",
    "mass_transfer",
    "explorer",
    "upload",
    "jobs",
    "admin",
}


def _listed(page: Any, voila: Voila) -> set[str]:
    page.goto(voila.page_url("index"))
    page.locator(".aw-index").wait_for(state="visible")
    hrefs = page.locator(".aw-index a").evaluate_all("links => links.map(a => a.href)")
    names = {href.rsplit("/", 1)[-1].removesuffix(".ipynb") for href in hrefs}
    # Every link leads to a dashboard notebook that exists, next to the index.
    assert all(href.startswith(f"{voila.url}/voila/render/") for href in hrefs)
    assert all((REPO / "dashboards" / f"{name}.ipynb").is_file() for name in names)
    return names


def _follow(page: Any, title: str) -> Any:
    """Click the dashboard's link; the page it opens (JupyterLab's output renderer gives
    links of an HTML output their own tab, so the list stays open)."""
    link = page.locator(".aw-index a", has_text=title)
    if link.get_attribute("target") == "_blank":
        with page.context.expect_page() as tab:
            link.click()
        opened = tab.value
    else:
        link.click()
        opened = page
    opened.wait_for_load_state()
    return opened


def test_admin_sees_every_dashboard_and_a_link_opens_one(
    page: Any, voila: Voila, shot: Shot
) -> None:
    assert _listed(page, voila) == EVERY
    page.locator(".aw-index", has_text="Signed in as").wait_for()
    shot(page, "index")
    opened = _follow(page, "DICOM explorer")
    assert opened.url == f"{voila.url}/voila/render/explorer.ipynb"
    opened.locator(".aw-explorer .aw-count", has_text="3 patients").wait_for()


def test_researcher_sees_only_permitted_dashboards(page: Any, voila_researcher: Voila) -> None:
    # bob's group holds three app permissions; the jobs dashboard needs none.
    assert _listed(page, voila_researcher) == {*RESEARCHER_PERMISSIONS, "jobs"}
    _follow(page, "Selective transfer").locator(".aw-selective-transfer").wait_for()


def test_hub_sends_dashboard_users_to_the_index(tmp_path: Path) -> None:
    """The shipped hub config roots a dashboard user's server at dashboards/ and opens
    the index there; other users keep JupyterLab."""
    import os

    saved = dict(os.environ)
    os.environ["ADIT_WB_DATA_DIR"] = str(tmp_path / "wb-data")
    os.environ.pop("ADIT_WB_HUB_SERVICE_USER", None)
    os.environ.pop("ADIT_WB_HUB_DASHBOARDS_DIR", None)
    try:
        loader = PyFileConfigLoader("jupyterhub_config.py", path=str(REPO / "jupyter_config"))
        config = loader.load_config()
    finally:
        os.environ.clear()
        os.environ.update(saved)

    class Group:
        def __init__(self, name: str) -> None:
            self.name = name

    class Spawner:
        def __init__(self, *groups: str) -> None:
            self.user = type("User", (), {"groups": [Group(g) for g in groups]})()
            self.default_url, self.notebook_dir = config.Spawner.default_url, ""

    assert config.Spawner.default_url == "/lab"
    researcher, clerk = Spawner("radiology"), Spawner("radiology", "dashboard-users")
    for spawner in (researcher, clerk):
        config.Spawner.pre_spawn_hook(spawner)
    assert (researcher.default_url, researcher.notebook_dir) == ("/lab", "")
    assert clerk.default_url == "/voila/render/index.ipynb"
    assert Path(clerk.notebook_dir) == REPO / "dashboards"
    assert (Path(clerk.notebook_dir) / "index.ipynb").is_file()
