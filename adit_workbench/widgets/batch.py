"""Batch query: upload a CSV/Excel file, run it against a source node, download the results.

A refused file lists every bad row at once (line, column, reason, as
:class:`~adit_workbench.jobs.BatchFileError` reports them; never cell values). When the
job ends its results appear as a table with a CSV download, and (with the batch-transfer
permission) can be sent on as a batch transfer without leaving the page.
"""

from __future__ import annotations

import html
import tempfile
import threading
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..jobs import BatchFileError, JobStatus
from ._common import (
    Background,
    ErrorLine,
    download_link,
    follow_job,
    has_permission,
    html_table,
    node_picker,
    site_banner,
)

__all__ = ["BatchQuery"]

#: Result rows shown in the page (the download has all of them).
SHOWN_ROWS = 200


def _text(name: str, label: str) -> widgets.Text:
    field = widgets.Text(description=label, style={"description_width": "8em"},
                         layout={"width": "24em"})  # fmt: skip
    field.add_class(f"aw-field-{name}")
    return field


def uploaded(upload: widgets.FileUpload) -> tuple[str, bytes] | None:
    """The name and bytes of the file in an upload widget (None when empty)."""
    value = upload.value
    if not value:
        return None
    item = value[0] if isinstance(value, (tuple, list)) else next(iter(value.values()))
    return str(item["name"]), bytes(item["content"])


def show_failure(exc: BaseException, error: ErrorLine, row_errors: widgets.HTML) -> None:
    """A refused batch file as a line plus a table of its bad rows; anything else as a line."""
    if isinstance(exc, BatchFileError):
        rows = [{"line": e.line or "", "column": e.column, "reason": e.reason}
                for e in exc.errors]  # fmt: skip
        error.show(f"batch file {exc.name} has {len(rows)} problem(s); nothing was queued")
        row_errors.value = html_table(rows, ("line", "column", "reason"))
        return
    error.show(exc)


class BatchQuery(widgets.VBox):
    """The batch-query dashboard as one widget: ``BatchQuery(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-batch-query")
        self.wb = wb
        self.source = node_picker(wb, "source", "Source")
        self.upload = widgets.FileUpload(accept=".csv,.xlsx", multiple=False,
                                         description="Batch file")  # fmt: skip
        self.upload.add_class("aw-upload")
        self.project_name = _text("project_name", "Project")
        self.ethics = _text("ethics_approval_id", "Ethics approval")
        self.urgent: widgets.Checkbox | None = None
        extra: list[widgets.Widget] = []
        if has_permission(wb, "urgent"):
            self.urgent = widgets.Checkbox(description="Urgent", indent=False)
            self.urgent.add_class("aw-urgent")
            extra.append(self.urgent)
        self.start_button = widgets.Button(description="Start query", button_style="primary",
                                           icon="play")  # fmt: skip
        self.start_button.add_class("aw-start")
        self.error = ErrorLine()
        self.row_errors = widgets.HTML()
        self.row_errors.add_class("aw-row-errors")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "30em"})
        self.progress.add_class("aw-progress")
        self.job_line = widgets.HTML()
        self.job_line.add_class("aw-job")
        self.results = widgets.HTML()
        self.results.add_class("aw-batch-results")
        self.job: Any = None
        self._csv: bytes | None = None
        self._run = Background()
        self.start_button.on_click(lambda _b: self.start())

        onward: list[widgets.Widget] = []
        self.destination: widgets.Dropdown | None = None
        if has_permission(wb, "batch_transfer"):
            self.destination = node_picker(wb, "destination", "Transfer to")
            self.transfer_button = widgets.Button(description="Use for a batch transfer",
                                                  icon="paper-plane", disabled=True)  # fmt: skip
            self.transfer_button.add_class("aw-batch-transfer")
            self.transfer_button.on_click(lambda _b: self.transfer_results())
            onward = [widgets.HBox([self.destination, self.transfer_button])]
        self.children = (
            widgets.HTML("<h3>Batch query</h3>"),
            site_banner(wb),
            widgets.HBox([self.source, self.upload]),
            widgets.HBox([self.project_name, self.ethics, *extra]),
            self.start_button,
            self.error,
            self.row_errors,
            widgets.HBox([self.progress, self.job_line]),
            self.results,
            *onward,
        )

    def start(self) -> None:
        """Check the file, create the job and follow it (all in the background)."""
        self.error.clear()
        self.row_errors.value = ""
        self.results.value = ""
        file = uploaded(self.upload)
        if file is None:
            self.error.show("choose a .csv or .xlsx batch file first")
            return
        if not self.source.value:
            self.error.show("you may not use any node as a source")
            return
        name, data = file
        options: dict[str, Any] = {
            "project_name": self.project_name.value.strip(),
            "ethics_approval_id": self.ethics.value.strip(),
        }
        if self.urgent is not None and self.urgent.value:
            options["urgent"] = True
        source = self.source.value
        self.start_button.disabled = True
        self.job_line.value = "checking the file…"

        def work(stop: threading.Event) -> JobStatus:
            self.job = self.wb.batch_query(data, source=source, name=name, **options)
            return follow_job(self.job, self.progress, self.job_line, stop)

        self._run.start(work, self._finished, self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.start_button.disabled = False
        self.job_line.value = ""
        show_failure(exc, self.error, self.row_errors)

    def _finished(self, status: JobStatus) -> None:
        self.start_button.disabled = False
        if status not in (JobStatus.SUCCESS, JobStatus.WARNING) or self.job is None:
            return
        try:
            results = self.job.results
            frame = results.df
            with tempfile.TemporaryDirectory() as tmp:
                self._csv = Path(results.to_csv(Path(tmp) / "results.csv")).read_bytes()
        except Exception as exc:
            self.error.show(exc)
            return
        rows = frame.head(SHOWN_ROWS).to_dict("records")
        more = f" (first {SHOWN_ROWS} of {len(frame)})" if len(frame) > SHOWN_ROWS else ""
        link = download_link(self._csv, f"batch_query_{self.job.id}.csv", "Download CSV")
        self.results.value = (
            f"<p>{len(frame)} result row(s){html.escape(more)} - {link}</p>"
            + html_table(rows, list(frame.columns), css="aw-result-list")
        )
        if self.destination is not None:
            self.transfer_button.disabled = False

    def transfer_results(self) -> None:
        """Start a batch transfer of the results (the CSV is a valid batch-transfer file)."""
        if self._csv is None or self.destination is None or self.job is None:
            return
        self.error.clear()
        source, destination, data = self.source.value, self.destination.value, self._csv
        name = f"batch_query_{self.job.id}.csv"
        self.transfer_button.disabled = True

        def work(stop: threading.Event) -> JobStatus:
            self.job = self.wb.batch_transfer(data, source=source, to=destination, name=name)
            return follow_job(self.job, self.progress, self.job_line, stop)

        self._run.start(work, lambda _s: None, self._failed)

    def close(self) -> None:
        """Stop background work and close the widget."""
        self._run.stop()
        super().close()
