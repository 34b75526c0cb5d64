"""Batch transfer: upload a CSV/Excel file of studies (PatientID, StudyInstanceUID,
optional SeriesInstanceUID and Pseudonym) and transfer them, one task per study.

As in the batch query, a refused file lists every bad row at once and nothing is queued.
A batch query's downloaded results are a valid batch-transfer file.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ._common import ErrorLine, node_picker, site_banner
from ._forms import JobRunner, PermissionFlags, batch_upload, show_failure, text_field, uploaded

__all__ = ["BatchTransfer"]


class BatchTransfer(widgets.VBox):
    """The batch-transfer dashboard as one widget: ``BatchTransfer(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-batch-transfer-app")
        self.wb = wb
        self.source = node_picker(wb, "source", "Source")
        self.destination = node_picker(wb, "destination", "Destination")
        self.upload = batch_upload()
        self.project_name = text_field("project_name", "Project", width="24em")
        self.ethics = text_field("ethics_approval_id", "Ethics approval", width="24em")
        self.trial_protocol_id = text_field("trial_protocol_id", "Trial ID", width="24em")
        self.flags = PermissionFlags(wb)
        self.urgent, self.unpseudonymized = self.flags.urgent, self.flags.unpseudonymized
        self.start_button = widgets.Button(description="Start transfer", button_style="success",
                                           icon="paper-plane")  # fmt: skip
        self.start_button.add_class("aw-start")
        self.error = ErrorLine()
        self.row_errors = widgets.HTML()
        self.row_errors.add_class("aw-row-errors")
        self.runner = JobRunner(self.start_button, self._failed)
        self.progress, self.job_line = self.runner.progress, self.runner.line
        self.start_button.on_click(lambda _b: self.start())
        self.children = (
            widgets.HTML("<h3>Batch transfer</h3>"),
            site_banner(wb),
            widgets.HBox([self.source, self.destination]),
            self.upload,
            widgets.HBox([self.project_name, self.ethics]),
            widgets.HBox([self.trial_protocol_id, *self.flags.widgets]),
            self.start_button,
            self.error,
            self.row_errors,
            widgets.HBox([self.progress, self.job_line]),
        )

    @property
    def job(self) -> Any:
        """The job this widget created last (None before)."""
        return self.runner.job

    def options(self) -> dict[str, Any]:
        """The form as ``wb.batch_transfer`` keywords."""
        return {
            "project_name": self.project_name.value.strip(),
            "ethics_approval_id": self.ethics.value.strip(),
            "trial_protocol_id": self.trial_protocol_id.value.strip(),
            **self.flags.options(),
        }

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
        self.runner.start(
            lambda: self.wb.batch_transfer(data, source=source, to=destination, name=name,
                                           **options),
            note="checking the file…",
        )  # fmt: skip

    def _failed(self, exc: BaseException) -> None:
        show_failure(exc, self.error, self.row_errors)

    def close(self) -> None:
        """Stop background work and close the widget."""
        self.runner.stop()
        super().close()
