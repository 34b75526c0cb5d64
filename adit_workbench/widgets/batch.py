"""Batch query: upload a CSV/Excel file, run it against a source node, download the results.

A refused file lists every bad row at once (line, column, reason, as
:class:`~adit_workbench.jobs.BatchFileError` reports them; never cell values). When the
job ends its results appear as a table with a CSV download, and (with the batch-transfer
permission) can be sent on as a batch transfer without leaving the page.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..jobs import JobStatus
from ._common import ErrorLine, download_link, has_permission, html_table, node_picker, site_banner
from ._forms import JobRunner, PermissionFlags, batch_upload, show_failure, text_field, uploaded

__all__ = ["BatchQuery", "show_failure", "uploaded"]

#: Result rows shown in the page (the download has all of them).
SHOWN_ROWS = 200


class BatchQuery(widgets.VBox):
    """The batch-query dashboard as one widget: ``BatchQuery(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-batch-query")
        self.wb = wb
        self.source = node_picker(wb, "source", "Source")
        self.upload = batch_upload()
        self.project_name = text_field("project_name", "Project", width="24em")
        self.ethics = text_field("ethics_approval_id", "Ethics approval", width="24em")
        self.flags = PermissionFlags(wb, unpseudonymized=False)
        self.urgent = self.flags.urgent
        self.start_button = widgets.Button(description="Start query", button_style="primary",
                                           icon="play")  # fmt: skip
        self.start_button.add_class("aw-start")
        self.error = ErrorLine()
        self.row_errors = widgets.HTML()
        self.row_errors.add_class("aw-row-errors")
        self.runner = JobRunner(self.start_button, self._failed)
        self.progress, self.job_line = self.runner.progress, self.runner.line
        self.results = widgets.HTML()
        self.results.add_class("aw-batch-results")
        self._csv: bytes | None = None
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
            widgets.HBox([self.project_name, self.ethics, *self.flags.widgets]),
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
            **self.flags.options(),
        }
        source = self.source.value
        self.runner.start(
            lambda: self.wb.batch_query(data, source=source, name=name, **options),
            note="checking the file…",
            done=self._finished,
        )

    @property
    def job(self) -> Any:
        """The job this widget created last (None before)."""
        return self.runner.job

    def _failed(self, exc: BaseException) -> None:
        show_failure(exc, self.error, self.row_errors)

    def _finished(self, status: JobStatus) -> None:
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
        self.runner.start(
            lambda: self.wb.batch_transfer(data, source=source, to=destination, name=name),
            button=self.transfer_button,
        )

    def close(self) -> None:
        """Stop background work and close the widget."""
        self.runner.stop()
        super().close()
