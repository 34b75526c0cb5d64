"""Every dashboard rendered by Voilà and used in headless Chromium, on the sandbox PACS.

Waits are on widgets and on the results of callbacks, never on page load: the HTML
arrives before the widget manager has connected to the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.widgets.site import Site

from .conftest import Voila

pytestmark = pytest.mark.slow

Shot = Callable[[Any, str], Path]


def _open(page: Any, voila: Voila, dashboard: str, root_class: str) -> None:
    page.goto(voila.page_url(dashboard))
    page.locator(f".{root_class}").wait_for(state="visible")


def _wait_for_image(page: Any, css: str) -> None:
    """Wait until the <img> matching ``css`` has data and the browser decoded it."""
    image = page.locator(f"img{css}")
    image.wait_for(state="visible")
    page.wait_for_function(
        "css => { const i = document.querySelector(css);"
        " return i && i.src && i.complete && i.naturalWidth > 0; }",
        arg=f"img{css}",
    )
    assert image.evaluate("i => i.naturalWidth") > 0


def test_selective_transfer_search_select_transfer(
    page: Any, voila: Voila, site: Site, shot: Shot
) -> None:
    _open(page, voila, "selective_transfer", "aw-selective-transfer")
    page.locator(".aw-field-patient_id input").fill("SYN0002")
    page.locator("button.aw-search").click()
    rows = page.locator(".aw-row")
    page.locator(".aw-count", has_text="2 studies found").wait_for()
    assert rows.count() == 2
    page.locator(".aw-row-check input").first.check()
    page.locator(".aw-field-pseudonym input").fill("BROWSER01")
    page.locator(".aw-field-trial_protocol_id input").fill("TRIAL-B")
    page.locator("button.aw-transfer").click()
    page.locator(".aw-job", has_text="SUCCESS").wait_for(timeout=120_000)
    shot(page, "selective_transfer")
    delivered = [p for p in site.out.rglob("*") if p.is_file() and "BROWSER01" in str(p)]
    assert len(delivered) == 6  # one study: 2 series x 3 instances


def test_bad_batch_file_shows_row_errors(
    page: Any, voila: Voila, tmp_path: Path, shot: Shot
) -> None:
    bad = tmp_path / "queries.csv"
    bad.write_text("PatientID,From,Modality\nSYN0001,notadate,CT\nSYN0002,2021-01-31,C T X\n")
    _open(page, voila, "batch_query", "aw-batch-query")
    with page.expect_file_chooser() as chooser:
        page.locator(".aw-upload").click()
    chooser.value.set_files(str(bad))
    page.locator("button.aw-start").click()
    errors = page.locator(".aw-row-errors tbody tr")
    errors.first.wait_for()
    lines = [errors.nth(i).locator("td").first.inner_text() for i in range(errors.count())]
    assert {"2", "3"} <= set(lines)
    assert "nothing was queued" in page.locator(".aw-error").inner_text()
    assert "Traceback" not in page.content()
    shot(page, "batch_query")


def test_explorer_drill_down_to_a_thumbnail(page: Any, voila: Voila, shot: Shot) -> None:
    _open(page, voila, "explorer", "aw-explorer")
    count = page.locator(".aw-count")
    page.locator(".aw-count", has_text="3 patients").wait_for()
    listing = page.locator(".aw-listing select")
    listing.select_option(index=0)
    page.locator(".aw-metadata", has_text="PatientID").wait_for()
    page.locator("button.aw-open").click()
    page.locator(".aw-count", has_text="2 studies").wait_for()
    listing.select_option(index=0)
    page.locator("button.aw-open").click()
    page.locator(".aw-count", has_text="2 series").wait_for()
    listing.select_option(index=0)
    page.locator(".aw-metadata", has_text="SeriesInstanceUID").wait_for()
    assert page.locator("button.aw-crumb").count() == 3
    assert count.inner_text().strip() == "2 series"
    page.locator("button.aw-thumbnail-button").click()
    _wait_for_image(page, ".aw-thumbnail")
    # The PNG itself, not only an element: the widget's bytes became a decoded image.
    size = page.locator("img.aw-thumbnail").evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert min(size) >= 16, size
    shot(page, "explorer")


def test_jobs_lists_a_job_with_its_tasks(page: Any, voila: Voila, site: Site, shot: Shot) -> None:
    hits = site.wb.node("SANDBOX").find_studies(patient_id="SYN0003", modality="MR")
    job = site.wb.transfer(hits, to="OUT", pseudonym="JOBS02").wait(progress=False)
    _open(page, voila, "jobs", "aw-jobs")
    page.locator(".aw-job-choice select").select_option(value=None, label=None, index=0)
    page.locator(".aw-job-list", has_text=f"{job.id}").wait_for()
    page.locator(".aw-tasks", has_text="delivered").wait_for()
    assert page.locator("button.aw-restart").count() == 1  # the admin is staff
    _wait_for_image(page, ".aw-chart-image")
    shot(page, "jobs")


def test_permissions_decide_the_controls(page: Any, voila: Voila, voila_researcher: Voila) -> None:
    _open(page, voila, "selective_transfer", "aw-selective-transfer")
    assert page.locator(".aw-urgent").count() == 1
    assert page.locator(".aw-unpseudonymized").count() == 1
    _open(page, voila_researcher, "selective_transfer", "aw-selective-transfer")
    assert page.locator(".aw-urgent").count() == 0
    assert page.locator(".aw-unpseudonymized").count() == 0
    options = page.locator(".aw-destination-picker select option").all_inner_texts()
    assert options == ["OUT"]
    _open(page, voila_researcher, "jobs", "aw-jobs")
    assert page.locator("button.aw-restart").count() == 0
    assert page.locator(".aw-all-users").count() == 0


def test_mass_transfer_preview(page: Any, voila: Voila, site: Site, shot: Shot) -> None:
    study = site.wb.node("SANDBOX").find_studies(patient_id="SYN0001", modality="CT")[0]
    day = study.study_date.isoformat()
    _open(page, voila, "mass_transfer", "aw-mass-transfer")
    page.locator(".aw-field-start input").fill(day)
    page.locator(".aw-field-end input").fill(day)
    page.locator(".aw-filter-check", has_text="1 filter(s)").wait_for()
    page.locator("button.aw-preview").click()
    page.locator(".aw-preview-count", has_text="1 studies, 2 series").wait_for()
    shot(page, "mass_transfer")


def test_admin_grant_changes_what_a_researcher_sees(
    page: Any, voila: Voila, voila_researcher: Voila, site: Site, shot: Shot
) -> None:
    _open(page, voila_researcher, "admin", "aw-admin")
    assert page.locator(".aw-not-admin").count() == 1
    assert page.locator(".aw-perm-urgent").count() == 0
    try:
        _open(page, voila, "admin", "aw-admin")
        page.locator(".aw-group input").fill("researchers")
        page.locator("button.aw-open-group").click()
        page.locator(".aw-perm-explorer input:checked").wait_for()
        page.locator(".aw-perm-urgent input").check()
        page.locator(".aw-audit", has_text="access.perm.add").wait_for()
        shot(page, "admin")
        _open(page, voila_researcher, "selective_transfer", "aw-selective-transfer")
        assert page.locator(".aw-urgent").count() == 1
    finally:
        site.wb.access.admin.remove_permission("researchers", "urgent")


def test_batch_transfer_dashboard_refuses_a_bad_file(
    page: Any, voila: Voila, tmp_path: Path, shot: Shot
) -> None:
    bad = tmp_path / "studies.csv"
    bad.write_text("PatientID,StudyInstanceUID,Pseudonym\nSYN0001,not a uid,P1\n")
    _open(page, voila, "batch_transfer", "aw-batch-transfer-app")
    with page.expect_file_chooser() as chooser:
        page.locator(".aw-upload").click()
    chooser.value.set_files(str(bad))
    page.locator("button.aw-start").click()
    page.locator(".aw-row-errors tbody tr").first.wait_for()
    assert "nothing was queued" in page.locator(".aw-error").inner_text()
    shot(page, "batch_transfer")
