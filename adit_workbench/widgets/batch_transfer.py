"""Batch transfer: upload a CSV/Excel file of studies (PatientID, StudyInstanceUID,
optional SeriesInstanceUID and Pseudonym) and transfer them, one task per study.

As in the batch query, a refused file lists every bad row at once and nothing is queued.
A batch query's downloaded results are a valid batch-transfer file.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets

from ..jobs import JobStatus
from ._common import (
    Background,
    ErrorLine,
    follow_job,
    has_permission,
    node_picker,
    site_banner,
)
from .batch import show_failure, uploaded

__all__ = ["BatchTransfer"]


def _text(name: str, label: str) -> widgets.Text:
    field = widgets.Text(description=label, style={"description_width": "8em"},
                         layout={"width": "24em"})  # fmt: skip
    field.add_class(f"aw-field-{name}")
    return field


class BatchTransfer(widgets.VBox):
    """The batch-transfer dashboard as one widget: ``BatchTransfer(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-batch-transfer-app")
        self.wb = wb
        self.source = node_picker(wb, "source", "Source")
        self.destination = node_picker(wb, "destination", "Destination")
        self.upload = widgets.FileUpload(accept=".csv,.xlsx", multiple=False,
                                         description="Batch file")  # fmt: skip
        self.upload.add_class("aw-upload")
        self.project_name = _text("project_name", "Project")
        self.ethics = _text("ethics_approval_id", "Ethics approval")
        self.trial_protocol_id = _text("trial_protocol_id", "Trial ID")
        flags: list[widgets.Widget] = []
        self.urgent: widgets.Checkbox | None = None
        self.unpseudonymized: widgets.Checkbox | None = None
        if has_permission(wb, "urgent"):
            self.urgent = widgets.Checkbox(description="Urgent", indent=False)
            self.urgent.add_class("aw-urgent")
            flags.append(self.urgent)
        if has_permission(wb, "transfer_unpseudonymized"):
            self.unpseudonymized = widgets.Checkbox(
                description="Transfer without pseudonymization", indent=False
            )
            self.unpseudonymized.add_class("aw-unpseudonymized")
            flags.append(self.unpseudonymized)
        self.start_button = widgets.Button(description="Start transfer", button_style="success",
                                           icon="paper-plane")  # fmt: skip
        self.start_button.add_class("aw-start")
        self.error = ErrorLine()
        self.row_errors = widgets.HTML()
        self.row_errors.add_class("aw-row-errors")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "30em"})
        self.progress.add_class("aw-progress")
        self.job_line = widgets.HTML()
        self.job_line.add_class("aw-job")
        self.job: Any = None
        self._run = Background()
        self.start_button.on_click(lambda _b: self.start())
        self.children = (
            widgets.HTML("<h3>Batch transfer</h3>"),
            site_banner(wb),
            widgets.HBox([self.source, self.destination]),
            self.upload,
            widgets.HBox([self.project_name, self.ethics]),
            widgets.HBox([self.trial_protocol_id, *flags]),
            self.start_button,
            self.error,
            self.row_errors,
            widgets.HBox([self.progress, self.job_line]),
        )

    def options(self) -> dict[str, Any]:
        """The form as ``wb.batch_transfer`` keywords."""
        options: dict[str, Any] = {
            "project_name": self.project_name.value.strip(),
            "ethics_approval_id": self.ethics.value.strip(),
            "trial_protocol_id": self.trial_protocol_id.value.strip(),
        }
        if self.urgent is not None and self.urgent.value:
            options["urgent"] = True
        if self.unpseudonymized is not None and self.unpseudonymized.value:
            options["pseudonymize"] = False
        return options

    def start(self) -> None:
        """Check the file, create the job and follow it (in the background)."""
        self.error.clear()
        self.row_errors.value = ""
        file = uploaded(self.upload)
        if file is None:
            self.error.show("choose a .csv or .xlsx batch file first")
            return
        if not self.source.value or not self.destination.value:
            self.error.show("you need a node you may use as a source and one as a destination")
            return
        name, data = file
        source, destination, options = self.source.value, self.destination.value, self.options()
        self.start_button.disabled = True
        self.job_line.value = "checking the file…"

        def work(stop: threading.Event) -> JobStatus:
            self.job = self.wb.batch_transfer(data, source=source, to=destination, name=name,
                                              **options)  # fmt: skip
            return follow_job(self.job, self.progress, self.job_line, stop)

        def failed(exc: BaseException) -> None:
            self.start_button.disabled = False
            self.job_line.value = ""
            show_failure(exc, self.error, self.row_errors)

        def done(_status: JobStatus) -> None:
            self.start_button.disabled = False

        self._run.start(work, done, failed)

    def close(self) -> None:
        """Stop background work and close the widget."""
        self._run.stop()
        super().close()
