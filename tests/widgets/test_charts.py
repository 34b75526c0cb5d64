"""The jobs dashboard's chart from real jobs: instances per day and per modality."""

from __future__ import annotations

from datetime import UTC, datetime

import adit_workbench as aw
from adit_workbench.widgets.charts import UNRECORDED, collect_stats, render_png

from .conftest import eventually
from .site import Site

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
    stats = collect_stats(handles, {h.id: h.summary() for h in handles})
    today = datetime.now(UTC).date()
    # One CT study by mass transfer (2 series x 3 instances), one MR study by hand.
    assert stats.per_day[today] == selective.progress.items_done + 6
    # Mass transfers say the modality of each series; selective transfers do not (yet).
    assert stats.per_modality["CT"] == 6
    assert stats.per_modality[UNRECORDED] == selective.progress.items_done == 6
    assert render_png(stats).startswith(PNG)

    widget = aw.widgets.Jobs(site.wb, live=False)
    try:
        eventually(lambda: widget.chart.stats is not None, what="chart drawn")
        assert widget.chart.stats is not None
        assert widget.chart.stats.per_modality == stats.per_modality
        assert bytes(widget.chart.image.value).startswith(PNG)
        assert widget.chart.error.value == ""
    finally:
        widget.close()


def test_chart_without_transfers_still_draws() -> None:
    stats = collect_stats([], {})
    assert stats.empty
    assert render_png(stats).startswith(PNG)
