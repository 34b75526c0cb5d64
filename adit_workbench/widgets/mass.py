"""Mass transfer: a date range, a partition size and a filter list, previewed before it starts.

The filter editor takes ADIT's JSON list (``[{"mode": "include", "modality": "CT"}]``)
and is checked as it is typed (:func:`~adit_workbench.jobs.mass.parse_filters`, the same
check the job makes). "Preview" counts what the include filters find in the first
partition, so a filter that matches nothing or everything shows before hours of work.
"""

from __future__ import annotations

import html
import threading
from datetime import date, timedelta
from typing import Any

import ipywidgets as widgets

from ._common import Background, ErrorLine, node_picker, site_banner
from ._forms import JobRunner, PermissionFlags, text_field

__all__ = ["MassTransfer"]

DEFAULT_FILTERS = '[\n  {"mode": "include", "modality": "CT"}\n]'
#: Include-filter keys the preview can send to the node as query filters.
_QUERY_KEYS = {"modality": "modality", "study_description": "study_description"}


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{what} is not a date (YYYY-MM-DD)") from None


class MassTransfer(widgets.VBox):
    """The mass-transfer dashboard as one widget: ``MassTransfer(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-mass-transfer")
        self.wb = wb
        self.source = node_picker(wb, "source", "Source")
        self.destination = node_picker(wb, "destination", "Destination")
        self.start = text_field("start", "From", "YYYY-MM-DD")
        self.end = text_field("end", "Until", "YYYY-MM-DD")
        self.granularity = widgets.Dropdown(options=["daily", "weekly"], value="daily",
                                            description="Partitions")  # fmt: skip
        self.filters = widgets.Textarea(value=DEFAULT_FILTERS, description="Filters",
                                        layout={"width": "40em", "height": "8em"})  # fmt: skip
        self.filters.add_class("aw-filters")
        self.filter_check = widgets.HTML()
        self.filter_check.add_class("aw-filter-check")
        self.project_name = text_field("project_name", "Project")
        self.trial_protocol_id = text_field("trial_protocol_id", "Trial ID")
        # Mass transfers run at the lowest priority: they cannot be urgent.
        self.flags = PermissionFlags(wb, urgent=False)
        self.unpseudonymized = self.flags.unpseudonymized
        self.preview_button = widgets.Button(description="Preview first partition", icon="eye")
        self.preview_button.add_class("aw-preview")
        self.preview = widgets.HTML()
        self.preview.add_class("aw-preview-count")
        self.start_button = widgets.Button(description="Start mass transfer", icon="play",
                                           button_style="success")  # fmt: skip
        self.start_button.add_class("aw-start")
        self.error = ErrorLine()
        self.runner = JobRunner(self.start_button, self.error.show)
        self.progress, self.job_line = self.runner.progress, self.runner.line
        self._preview = Background()

        self.filters.observe(lambda _c: self.check_filters(), names="value")
        self.preview_button.on_click(lambda _b: self.run_preview())
        self.start_button.on_click(lambda _b: self.start_job())
        self.children = (
            widgets.HTML("<h3>Mass transfer</h3>"),
            site_banner(wb),
            widgets.HBox([self.source, self.destination]),
            widgets.HBox([self.start, self.end, self.granularity]),
            self.filters,
            self.filter_check,
            widgets.HBox([self.project_name, self.trial_protocol_id, *self.flags.widgets]),
            widgets.HBox([self.preview_button, self.preview]),
            self.error,
            widgets.HBox([self.start_button, self.progress]),
            self.job_line,
        )
        # The filter parser imports the job layer's mass-transfer module (most of a
        # second): the first verdict comes from a thread, after the page is shown.
        self.filter_check.value = "<i>checking…</i>"
        threading.Thread(target=self.check_filters, name="aw-filters", daemon=True).start()

    def check_filters(self) -> list[dict[str, Any]] | None:
        """Validate the filter text; shows the verdict and returns the filters (or None)."""
        from ..jobs.mass import parse_filters

        text = self.filters.value
        try:
            parsed: list[dict[str, Any]] | None = parse_filters(text)
            verdict = f'<span style="color:#2e7d32">&#10003; {len(parsed or [])} filter(s)</span>'
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            parsed = None
            verdict = f'<span style="color:#b00020">&#10007; {html.escape(reason)}</span>'
        if self.filters.value == text:  # else a check of the newer text shows its verdict
            self.filter_check.value = verdict
        return parsed

    def first_partition(self) -> tuple[date, date]:
        """The dates of the first partition (a day, or up to a week)."""
        first = _day(self.start.value, "From")
        last = _day(self.end.value, "Until")
        if last < first:
            raise ValueError("Until is before From")
        span = 0 if self.granularity.value == "daily" else 6
        return first, min(last, first + timedelta(days=span))

    def run_preview(self) -> None:
        """Count the studies and series the include filters find in the first partition."""
        self.error.clear()
        filters = self.check_filters()
        if filters is None:
            self.error.show("fix the filters first")
            return
        try:
            first, last = self.first_partition()
        except ValueError as exc:
            self.error.show(str(exc))
            return
        source = self.source.value
        self.preview.value = "counting…"

        def work(stop: threading.Event) -> tuple[int, int]:
            node = self.wb.node(source)
            studies: dict[str, Any] = {}
            series: set[str] = set()
            for rule in (f for f in filters if f.get("mode", "include") == "include"):
                query = {_QUERY_KEYS[k]: v for k, v in rule.items() if k in _QUERY_KEYS and v}
                for study in node.find_studies(study_date=(first, last), **query):
                    if stop.is_set():
                        break
                    studies[study.study_uid] = study
                    modality = rule.get("modality")
                    found = study.series(modality=modality) if modality else study.series()
                    series.update(s.series_uid for s in found)
            return len(studies), len(series)

        def done(counts: tuple[int, int]) -> None:
            self.preview.value = html.escape(
                f"first partition {first.isoformat()}"
                + (f" to {last.isoformat()}" if last != first else "")
                + f": {counts[0]} studies, {counts[1]} series match the include filters"
            )

        def failed(exc: BaseException) -> None:
            self.preview.value = ""
            self.error.show(exc)

        self._preview.start(work, done, failed)

    def start_job(self) -> None:
        """Create the mass-transfer job and follow it."""
        self.error.clear()
        if self.check_filters() is None:
            self.error.show("fix the filters first")
            return
        options: dict[str, Any] = {
            "granularity": self.granularity.value,
            "project_name": self.project_name.value.strip(),
            "trial_protocol_id": self.trial_protocol_id.value.strip(),
            **self.flags.options(),
        }
        source, destination = self.source.value, self.destination.value
        start, end, filters = self.start.value.strip(), self.end.value.strip(), self.filters.value
        self.runner.start(
            lambda: self.wb.mass_transfer(source=source, to=destination, start=start, end=end,
                                          filters=filters, **options)
        )  # fmt: skip

    @property
    def job(self) -> Any:
        """The job this widget created last (None before)."""
        return self.runner.job

    def close(self) -> None:
        """Stop background work and close the widget."""
        self._preview.stop()
        self.runner.stop()
        super().close()
