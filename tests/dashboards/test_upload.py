"""The upload dashboard in headless Chromium: a server-side folder with a cut file and a
text file goes to a folder node pseudonymized; the refused files are listed by name; a
user without the ``upload`` permission sees no form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest

from adit_workbench.sandbox.synthetic import iter_datasets
from tests.widgets.site import Site

from .conftest import Voila

pytestmark = pytest.mark.slow

Shot = Callable[[Any, str], Path]
PSEUDONYM = "BROWSER-UP"


def _folder(root: Path) -> Path:
    folder = root / "scans"
    items = iter_datasets(patients=1, series=2, instances=2, rows=16, cols=16, pid_prefix="UPL")
    for n, ds in enumerate(items):
        path = folder / f"s{n // 2}" / f"{n}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    whole = (folder / "s0" / "0.dcm").read_bytes()
    (folder / "broken").mkdir()
    (folder / "broken" / "cut.dcm").write_bytes(whole[:-200])
    (folder / "notes.txt").write_text("not DICOM\n")
    return folder


def test_upload_a_folder(page: Any, voila: Voila, site: Site, tmp_path: Path, shot: Shot) -> None:
    folder = _folder(tmp_path)
    page.goto(voila.page_url("upload"))
    page.locator(".aw-upload").wait_for(state="visible")
    page.locator(".aw-field-folder input").fill(str(folder))
    page.locator("button.aw-check-folder").click()
    page.locator(".aw-folder-info", has_text="6 files").wait_for()
    page.locator(".aw-destination-picker select").select_option("OUT")
    page.locator(".aw-field-pseudonym input").fill(PSEUDONYM)
    page.locator(".aw-field-trial_protocol_id input").fill("TRIAL-U")
    page.locator("button.aw-start").click()
    page.locator(".aw-upload-summary", has_text="4 stored, 2 refused").wait_for(timeout=120_000)
    refused = page.locator(".aw-refused tbody tr").all_inner_texts()
    assert any("broken/cut.dcm" in row and "malformed" in row for row in refused), refused
    assert any("notes.txt" in row and "not a DICOM file" in row for row in refused), refused
    assert "Traceback" not in page.content()
    shot(page, "upload")
    stored = [pydicom.dcmread(p, stop_before_pixels=True) for p in site.out.rglob("*.dcm")]
    mine = [ds for ds in stored if ds.PatientID == PSEUDONYM]
    assert len(mine) == 4
    assert {ds.ClinicalTrialProtocolID for ds in mine} == {"TRIAL-U"}


def test_no_upload_permission_no_form(page: Any, voila_researcher: Voila) -> None:
    page.goto(voila_researcher.page_url("upload"))
    page.locator(".aw-upload-denied").wait_for()
    assert page.locator(".aw-field-folder").count() == 0
    assert page.locator("button.aw-start").count() == 0
