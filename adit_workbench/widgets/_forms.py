"""The form pieces the job-creating widgets share (selective, batch query, batch
transfer, mass transfer): labelled text fields, the permission-bound option boxes, the
batch-file upload with its row errors, and the job runner that creates a job in the
background and mirrors its progress.

One place for them keeps the four dashboards alike: the same CSS classes for the
browser tests, the same options for the same permission, the same handling of a refused
job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..jobs import BatchFileError, JobStatus
from ._common import Background, ErrorLine, follow_job, has_permission, html_table

__all__ = ["JobRunner", "PermissionFlags", "batch_upload", "show_failure", "text_field",
           "uploaded"]  # fmt: skip


def text_field(
    name: str, label: str, placeholder: str = "", *, width: str = "20em"
) -> widgets.Text:
    """A labelled text box with the CSS class ``aw-field-<name>``."""
    field = widgets.Text(description=label, placeholder=placeholder,
                         style={"description_width": "8em"}, layout={"width": width})  # fmt: skip
    field.add_class(f"aw-field-{name}")
    return field


class PermissionFlags:
    """The "urgent" and "without pseudonymization" boxes, built only for a user who holds
    the permission (the job layer checks again); ``options()`` gives their keywords."""

    def __init__(self, wb: Any, *, urgent: bool = True, unpseudonymized: bool = True) -> None:
        self.urgent: widgets.Checkbox | None = None
        self.unpseudonymized: widgets.Checkbox | None = None
        if urgent and has_permission(wb, "urgent"):
            self.urgent = widgets.Checkbox(description="Urgent", indent=False)
            self.urgent.add_class("aw-urgent")
        if unpseudonymized and has_permission(wb, "transfer_unpseudonymized"):
            self.unpseudonymized = widgets.Checkbox(
                description="Transfer without pseudonymization", indent=False
            )
            self.unpseudonymized.add_class("aw-unpseudonymized")

    @property
    def widgets(self) -> list[widgets.Widget]:
        """The boxes that exist, to place in a form."""
        return [box for box in (self.urgent, self.unpseudonymized) if box is not None]

    def options(self) -> dict[str, Any]:
        """``urgent=True`` / ``pseudonymize=False`` where ticked."""
        options: dict[str, Any] = {}
        if self.urgent is not None and self.urgent.value:
            options["urgent"] = True
        if self.unpseudonymized is not None and self.unpseudonymized.value:
            options["pseudonymize"] = False
        return options


def batch_upload() -> widgets.FileUpload:
    """A one-file upload for a .csv or .xlsx batch file."""
    upload = widgets.FileUpload(accept=".csv,.xlsx", multiple=False, description="Batch file")
    upload.add_class("aw-upload")
    return upload


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


class JobRunner:
    """Creates a job in the background and follows it in a progress bar and a line.

    ``progress`` (class ``aw-progress``) and ``line`` (``aw-job``) go into the form;
    ``job`` is the last job created. The start button is disabled while the job is
    being created and followed, and enabled again when it ends or is refused.
    """

    def __init__(self, button: widgets.Button, on_error: Callable[[BaseException], None]):
        self.button = button
        self.on_error = on_error
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "30em"})
        self.progress.add_class("aw-progress")
        self.line = widgets.HTML()
        self.line.add_class("aw-job")
        self.job: Any = None
        self._run = Background()

    def start(
        self,
        create: Callable[[], Any],
        *,
        note: str = "creating the job…",
        done: Callable[[JobStatus], None] | None = None,
        button: widgets.Button | None = None,
    ) -> None:
        """Run ``create()`` (which returns a job handle) and follow the job it made;
        ``button`` is the one to disable meanwhile (the runner's own by default)."""
        button = button or self.button
        button.disabled = True
        self.progress.value, self.progress.bar_style = 0, "info"
        self.line.value = note

        def work(stop: threading.Event) -> JobStatus:
            self.job = create()
            return follow_job(self.job, self.progress, self.line, stop)

        def finished(status: JobStatus) -> None:
            button.disabled = False
            if done is not None:
                done(status)

        def failed(exc: BaseException) -> None:
            button.disabled = False
            self.line.value = ""
            self.on_error(exc)

        self._run.start(work, finished, failed)

    def stop(self) -> None:
        """Stop following (the job itself goes on)."""
        self._run.stop()
