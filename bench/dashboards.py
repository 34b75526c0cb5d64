"""Bench: the Voilà dashboards in headless Chromium, against Voilà's hello world.

Run from the repository root::

    .venv/bin/python -m bench.dashboards [--rounds 3]

It starts the widget tests' workbench site (sandbox PACS, 3 patients, a folder OUT),
one Voilà serving a copy of every ``dashboards/*.ipynb`` beside a generated hello-world
notebook (one ``print`` cell), and Debian's Chromium through Playwright, then measures
in the same run:

* first render: ``goto`` until the dashboard's root widget is visible (a new browser
  context and a new kernel each time), against the hello world until its output line is
  visible; median of ``--rounds`` rounds, dashboards and hello world alternating, and
  the ratio of each dashboard to the hello world (aim: ≤ 1.5×);
* explorer click → rendered list: "Open" on a patient until the studies are counted,
  and on a study until the series are (aim: ≤ 0.5 s);
* the notebook's code alone in a fresh Python ("cells"), embedded and as a client of the
  workbench service started over the same database ("remote", a hub user's kernel:
  a URL and a token), to tell the kernel's share of a first render from Voilà's;
* thumbnail: ``series.thumbnail()`` through the facade, the call a dashboard's kernel
  makes (aim: ≤ 0.3 s); and in the browser too, click until the picture is shown, when
  the explorer offers thumbnails (``button.aw-thumbnail-button``, ``img.aw-thumbnail``).

Nothing here is asserted: the figures are printed as a table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat

from tests.servers._util import free_port, port_open, stop_process, wait_until
from tests.widgets.site import Site, workbench_site

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HELLO = "hello_world"
HELLO_TEXT = "hello world"
#: Generous: a first render on a loaded 2-core machine can take half a minute.
TIMEOUT_MS = 120_000


#: Root classes that are not the dashboard's name: ``aw-batch-transfer`` is the batch
#: query's "use for a batch transfer" button, so the batch transfer app has its own.
_ROOTS = {"batch_transfer": "aw-batch-transfer-app"}


def _root_class(dashboard: str) -> str:
    """The CSS class of a dashboard's root widget (``mass_transfer`` → ``aw-mass-transfer``)."""
    return _ROOTS.get(dashboard, "aw-" + dashboard.replace("_", "-"))


def _write_hello(folder: Path) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(f"print({HELLO_TEXT!r})")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    nbformat.write(notebook, folder / f"{HELLO}.ipynb")


@contextmanager
def _voila(site: Site, root: Path) -> Iterator[str]:
    """Voilà on a free port serving ``root`` (dashboards and the hello world side by side)."""
    voila = Path(sys.executable).with_name("voila")
    port = free_port()
    env = dict(os.environ)
    env.update(site.env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    log = root.parent / "voila.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(voila), str(root), "--no-browser", f"--port={port}",
             f"--Voila.config_file_paths={REPO / 'jupyter_config'}"],
            cwd=root.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), 60, "voila", proc, log)
        yield f"http://127.0.0.1:{port}/voila/render"
    finally:
        stop_process(proc)


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def first_render(browser: Any, base: str, name: str) -> float:
    """Seconds from navigation until the notebook's widget (or printed line) is visible."""
    context = browser.new_context(viewport={"width": 1300, "height": 700})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        if name == HELLO:
            target = page.locator(".jp-OutputArea-output", has_text=HELLO_TEXT)
        else:
            target = page.locator(f".{_root_class(name)}")

        def render() -> None:
            page.goto(f"{base}/{name}.ipynb")
            target.first.wait_for(state="visible")

        return _timed(render)
    finally:
        context.close()


def _counted(level: str) -> re.Pattern[str]:
    """The explorer's count once a level is listed ("3 studies"), not "loading studies…"."""
    return re.compile(rf"^\s*\d+ {level}\s*$")


def explorer_clicks(browser: Any, base: str, rounds: int) -> dict[str, list[float]]:
    """Seconds from a click on "Open" until the next level's list is counted."""
    context = browser.new_context(viewport={"width": 1300, "height": 700})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    times: dict[str, list[float]] = {"patient → studies": [], "study → series": []}
    thumbs: list[float] = []
    try:
        page.goto(f"{base}/explorer.ipynb")
        count = page.locator(".aw-count")
        page.locator(".aw-count", has_text=_counted("patients")).wait_for()
        listing = page.locator(".aw-listing select")
        opener = page.locator("button.aw-open")
        for _ in range(rounds):
            page.locator("button.aw-crumb").first.click()  # back to the node's patients
            page.locator(".aw-count", has_text=_counted("patients")).wait_for()
            for label, level in (("patient → studies", "studies"), ("study → series", "series")):
                listing.select_option(index=0)
                page.wait_for_function(
                    "el => !el.disabled", arg=opener.element_handle(), timeout=TIMEOUT_MS
                )

                def open_level(level: str = level) -> None:
                    opener.click()
                    page.locator(".aw-count", has_text=_counted(level)).wait_for()

                times[label].append(_timed(open_level))
            thumb_button = page.locator("button.aw-thumbnail-button")
            if thumb_button.count():  # the explorer offers thumbnails of series
                listing.select_option(index=0)  # a series: its thumbnail is hidden until asked
                thumb_button.wait_for(state="visible")

                def show_thumbnail(thumb_button: Any = thumb_button) -> None:
                    thumb_button.click()
                    page.locator("img.aw-thumbnail").wait_for(state="visible")

                thumbs.append(_timed(show_thumbnail))
        assert "series" in count.inner_text()  # the walk really reached the series
    finally:
        context.close()
    if thumbs:
        times["thumbnail (browser)"] = thumbs
    return times


def facade_thumbnails(site: Site, rounds: int) -> list[float]:
    """Seconds per ``series.thumbnail()`` on the sandbox (C-FIND, C-GET, windowing, PNG)."""
    series = site.wb.node("SANDBOX").find_studies(modality="CT")[0].series()[0]
    return [_timed(lambda: series.thumbnail()._repr_png_()) for _ in range(rounds)]


def kernel_seconds(site: Site, notebook: Path, remote: dict[str, str] | None = None) -> float:
    """Seconds a fresh Python takes to run the notebook's code cells (no browser, no
    Voilà): the part of a first render spent in the kernel, in imports and ``connect()``;
    with ``remote`` (service URL and token) as a hub user's kernel, a client of the service."""
    code = "\n".join(
        cell.source for cell in nbformat.read(notebook, as_version=4).cells
        if cell.cell_type == "code"
    )  # fmt: skip
    env = {**os.environ, **site.env, **(remote or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", code]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, timeout=300, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:  # a figure is missing, the others still count
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{notebook.stem}{' (remote)' if remote else ''} failed: {last}", file=sys.stderr)
        return float("nan")
    return seconds


@contextmanager
def _service(site: Site) -> Iterator[dict[str, str]]:
    """The workbench service over the site's database, and the environment of a kernel
    that uses it (as in a JupyterHub user server: a URL and a token, nothing else)."""
    from adit_workbench.config import get_settings
    from tests.web.conftest import start_service, stop_service

    running = start_service(get_settings())
    try:
        token = site.wb.access.tokens.create(expires=1).token
        yield {"ADIT_WB_SERVICE_URL": running.url, "ADIT_WB_API_TOKEN": token}
    finally:
        stop_service(running)


def _ms(values: list[float]) -> str:
    if any(v != v for v in values):  # NaN: the cells failed
        return f"{'failed':>8}"
    return f"{statistics.median(values) * 1000:8.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Repetitions of each figure.")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    dashboards = sorted(p.stem for p in (REPO / "dashboards").glob("*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="aw-bench-dash-") as tmp:
        root = Path(tmp) / "served"
        root.mkdir()
        for name in dashboards:
            shutil.copy(REPO / "dashboards" / f"{name}.ipynb", root)
        _write_hello(root)
        with (
            workbench_site(Path(tmp)) as site,
            _voila(site, root) as base,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                first_render(browser, base, HELLO)  # warm-up: imports, disk cache
                renders: dict[str, list[float]] = {name: [] for name in [HELLO, *dashboards]}
                for _ in range(args.rounds):
                    for name in dashboards:
                        renders[HELLO].append(first_render(browser, base, HELLO))
                        renders[name].append(first_render(browser, base, name))
                clicks = explorer_clicks(browser, base, args.rounds)
            finally:
                browser.close()
            thumbnails = facade_thumbnails(site, max(args.rounds, 5))
            kernel = {
                name: [kernel_seconds(site, root / f"{name}.ipynb") for _ in range(args.rounds)]
                for name in renders
            }
            with _service(site) as remote_env:
                remote = {
                    name: [
                        kernel_seconds(site, root / f"{name}.ipynb", remote_env)
                        for _ in range(args.rounds)
                    ]
                    for name in renders
                }

    hello = statistics.median(renders[HELLO])
    print(f"first render through Voilà, median of {args.rounds} (hello world alternating)")
    print("('cells ms': the notebook's code alone in a fresh Python, no Voilà, embedded;")
    print(" 'remote': the same as a client of the workbench service, as in a hub user server)")
    print(f"{'notebook':<28}{'ms':>8}  {'× hello':>8}  {'cells ms':>8}  {'remote':>8}")
    for name, values in renders.items():
        ratio = statistics.median(values) / hello
        flag = "" if name == HELLO or ratio <= 1.5 else "  (aim ≤ 1.5×)"
        cells = f"{_ms(kernel[name])}  {_ms(remote[name])}"
        print(f"{name:<28}{_ms(values)}  {ratio:8.2f}  {cells}{flag}")
    print()
    print(f"{'interaction':<28}{'ms':>8}  aim")
    for label, values in clicks.items():
        aim = "≤ 300" if "thumbnail" in label else "≤ 500"
        print(f"{'explorer ' + label:<28}{_ms(values)}  {aim}")
    print(f"{'series.thumbnail()':<28}{_ms(thumbnails)}  ≤ 300")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
