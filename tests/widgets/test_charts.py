"""The jobs dashboard's chart from real jobs: instances per day and per modality."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import adit_workbench as aw
from adit_workbench.errors import PermissionDenied
from adit_workbench.widgets.charts import UNRECORDED, collect_stats, render_png

from .conftest import eventually
from .site import RESEARCHER, Site

PNG = b"\x89PNG\r\n\x1a\n"


def test_chart_counts_transfers_per_day_and_modality(site: Site) -> None:
    sandbox = site.wb.node("SANDBOX")
    hits = sandbox.find_studies(patient_id="SYN0002", modality="MR")
    selective = site.wb.transfer(hits[:1], to="OUT", pseudonym="CHART01").wait(progress=False)
    study = sandbox.find_studies(patient_id="SYN0001", modality="CT")[0]
    assert study.study_date is not None
    day = study.study_date.isoformat()
    mass = site.wb.mass_transfer(
        source="SANDBOX", to="OUT", start=day, end=day, trial_protocol_id="CHART",
        filters=[{"mode": "include", "modality": "CT"}],
    ).wait(timeout=120, progress=False)  # fmt: skip
    assert mass.status == "SUCCESS"

    handles = site.wb.jobs.list(limit=50)
    summaries = {h.id: h.summary() for h in handles}
    stats = collect_stats(handles, summaries, jobs=site.wb.jobs)
    today = datetime.now(UTC).date()
    # One CT study by mass transfer (2 series x 3 instances), one MR study by hand.
    assert stats.per_day[today] == selective.progress.items_done + 6
    # Each transfer task recorded the modalities of what it delivered.
    assert selective.progress.items_done == 6
    assert dict(stats.per_modality) == {"CT": 6, "MR": 6}
    recorded = site.wb.jobs.instances_per_modality([selective.id, mass.id, 10**9])
    assert recorded == {selective.id: {"MR": 6}, mass.id: {"CT": 6}}
    assert render_png(stats).startswith(PNG)
    # Without the recorded modalities (an older service): mass transfers by their result
    # table, selective transfers unrecorded.
    fallback = collect_stats(handles, summaries)
    assert fallback.per_modality["CT"] == 6
    assert fallback.per_modality[UNRECORDED] == 6

    widget = aw.widgets.Jobs(site.wb, live=False)
    try:
        eventually(lambda: widget.chart.stats is not None, what="chart drawn")
        assert widget.chart.stats is not None
        assert widget.chart.stats.per_modality == stats.per_modality
        assert bytes(widget.chart.image.value).startswith(PNG)
        assert widget.chart.error.value == ""
    finally:
        widget.close()


def test_service_backend_gives_the_same_modalities(site: Site) -> None:
    """The remote facade reads the recorded modalities through the REST route."""
    from adit_workbench.remote import RemoteWorkbench
    from tests.web.conftest import start_service, stop_service

    job = site.wb.transfer(
        site.wb.node("SANDBOX").find_studies(patient_id="SYN0001", modality="CT")[:1],
        to="OUT", pseudonym="CHART02",
    ).wait(progress=False)  # fmt: skip
    assert job.status == "SUCCESS"
    local = site.wb.jobs.instances_per_modality([job.id])
    assert local == {job.id: {"CT": 6}}
    # The admin's job is not a researcher's to count (staff only, like ``jobs.get``).
    with pytest.raises(PermissionDenied):
        site.as_user(RESEARCHER).jobs.instances_per_modality([job.id])
    running = start_service(site.wb.settings)
    remote = RemoteWorkbench(running.url, site.wb.access.tokens.create(expires=1).token)
    try:
        assert remote.jobs.instances_per_modality([job.id, 10**9]) == local
        assert remote.jobs.instances_per_modality([]) == {}
        handles = remote.jobs.list(limit=50)
        over_rest = collect_stats(handles, {h.id: h.summary() for h in handles}, jobs=remote.jobs)
        handles = site.wb.jobs.list(limit=50)
        here = collect_stats(handles, {h.id: h.summary() for h in handles}, jobs=site.wb.jobs)
        assert over_rest.per_modality == here.per_modality
        assert over_rest.per_day == here.per_day
    finally:
        remote.close()
        stop_service(running)


def test_chart_without_transfers_still_draws() -> None:
    stats = collect_stats([], {})
    assert stats.empty
    assert render_png(stats).startswith(PNG)
