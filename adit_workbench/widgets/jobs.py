"""Jobs: the user's jobs with live progress, one job's tasks, and the actions on it.

The list comes from ``wb.jobs.list()`` (staff may tick "all users"); the chosen job's
progress bar and task table refresh in the background while it runs. Buttons act through
the job handle (cancel, resume, retry, restart for staff, delete); a refused action
shows the reason in the error line. Below, a chart of instances transferred per day and
per modality (:mod:`.charts`), drawn in the background.
"""

from __future__ import annotations

import html
import tempfile
import threading
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ._common import (
    FINAL,
    Background,
    ErrorLine,
    download_link,
    follow_job,
    has_permission,
    html_table,
    one_line,
    site_banner,
)
from .charts import JobChart

__all__ = ["Jobs"]

_JOB_COLUMNS = ("id", "kind", "status", "owner", "source", "destination", "created", "tasks",
                "finished", "message")  # fmt: skip
_TASK_COLUMNS = ("task", "lines", "status", "attempts", "done", "total", "message")
#: Job kinds with a result table to download.
_EXPORTABLE = frozenset({"batch_query", "mass_transfer"})
#: Seconds between refreshes of the list while "live" is on.
_REFRESH = 2.0


class Jobs(widgets.VBox):
    """The job list as one widget: ``Jobs(wb)``."""

    def __init__(self, wb: Any, *, live: bool = True, limit: int = 50) -> None:
        super().__init__()
        self.add_class("aw-jobs")
        self.wb = wb
        self.limit = limit
        self.error = ErrorLine()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.add_class("aw-refresh")
        self.live = widgets.Checkbox(value=live, description="live", indent=False)
        self.all_users: widgets.Checkbox | None = None
        top: list[widgets.Widget] = [self.refresh_button, self.live]
        if has_permission(wb, "staff"):
            self.all_users = widgets.Checkbox(description="all users", indent=False)
            self.all_users.add_class("aw-all-users")
            self.all_users.observe(lambda _c: self.refresh(), names="value")
            top.append(self.all_users)
        self.table = widgets.HTML()
        self.table.add_class("aw-job-table")
        self.choice = widgets.Dropdown(description="Job", options=[], value=None,
                                       layout={"width": "36em"})  # fmt: skip
        self.choice.add_class("aw-job-choice")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "30em"})
        self.progress.add_class("aw-progress")
        self.job_line = widgets.HTML()
        self.job_line.add_class("aw-job")
        self.tasks = widgets.HTML()
        self.tasks.add_class("aw-tasks")
        self.export = widgets.HTML()
        self.export.add_class("aw-export")
        self.actions: dict[str, widgets.Button] = {}
        names = ["cancel", "resume", "retry"]
        if has_permission(wb, "staff"):
            names.append("restart")
        names.append("delete")
        for name in names:
            button = widgets.Button(description=name.capitalize(), layout={"width": "7em"},
                                    button_style="danger" if name == "delete" else "")  # fmt: skip
            button.add_class(f"aw-{name}")
            button.on_click(lambda _b, n=name: self.act(n))
            self.actions[name] = button
        self.chart = JobChart(wb)
        self._summaries: dict[int, dict[str, Any]] = {}
        self._follow = Background()
        self._poll = Background()
        self._lock = threading.Lock()

        self.refresh_button.on_click(lambda _b: self.refresh())
        self.choice.observe(lambda _c: self.show_job(), names="value")
        self.live.observe(lambda _c: self._live_changed(), names="value")
        self.children = (
            widgets.HTML("<h3>Jobs</h3>"),
            site_banner(wb),
            widgets.HBox(top),
            self.error,
            self.table,
            self.choice,
            widgets.HBox([self.progress, self.job_line]),
            widgets.HBox(list(self.actions.values())),
            self.export,
            self.tasks,
            self.chart,
        )
        # The first read (every job's summary and progress) runs after the page is shown.
        self.table.value = "<i>loading the jobs…</i>"
        self.loaded = threading.Event()
        threading.Thread(target=self._first_refresh, name="aw-jobs", daemon=True).start()

    def _first_refresh(self) -> None:
        self.refresh()
        self.loaded.set()
        self._live_changed()

    # -- the list -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the job list again (final jobs' summaries are kept)."""
        try:
            self._refresh()
        except Exception as exc:
            self.error.show(exc)

    def _refresh(self) -> None:
        everyone = self.all_users is not None and self.all_users.value
        handles = self.wb.jobs.list(all_users=everyone, limit=self.limit)
        with self._lock:
            summaries = {}
            for handle in handles:
                known = self._summaries.get(handle.id)
                if known is None or known["status"] not in FINAL:
                    known = handle.summary()
                summaries[handle.id] = known
            self._summaries = summaries
        self.chart.update(handles, summaries)
        rows = list(summaries.values())
        self.table.value = (
            html_table(rows, _JOB_COLUMNS, css="aw-job-list") if rows else ("<i>no jobs yet</i>")
        )
        options = [(f"#{r['id']} {r['kind']} {r['status']}", r["id"]) for r in rows]
        if options != list(self.choice.options):
            current = self.choice.value
            self.choice.options = options
            ids = [o[1] for o in options]
            self.choice.value = current if current in ids else (ids[0] if ids else None)

    def _live_changed(self) -> None:
        if not self.live.value:
            self._poll.stop()
            return

        def loop(stop: threading.Event) -> None:
            while not stop.wait(_REFRESH):
                if any(s["status"] not in FINAL for s in self._summaries.values()):
                    self.refresh()

        self._poll.start(loop, lambda _r: None, self.error.show)

    # -- one job ------------------------------------------------------------------------
    @property
    def job(self) -> Any:
        """The handle of the chosen job (None when there is none)."""
        return None if self.choice.value is None else self.wb.jobs[self.choice.value]

    def show_job(self) -> None:
        """Show the chosen job's progress and tasks; follow it while it runs."""
        self.error.clear()
        if self.choice.value is None:
            self.tasks.value = ""
            self.job_line.value = ""
            self._follow.stop()
            return
        try:
            job = self.job
        except Exception as exc:
            self.error.show(exc)
            return

        def work(stop: threading.Event) -> None:
            status = follow_job(job, self.progress, self.job_line, stop)
            self._show_tasks(job)
            if status in FINAL:
                self.refresh()

        self._show_tasks(job)
        self._follow.start(work, lambda _r: None, self.error.show)

    def _show_tasks(self, job: Any) -> None:
        frame = job.tasks
        rows = frame.to_dict("records") if len(frame) else []
        self.tasks.value = html_table(rows, _TASK_COLUMNS, css="aw-task-list")
        self.export.value = self._export_link(job)

    def _export_link(self, job: Any) -> str:
        """A CSV download of a finished job's result table (batch query, mass transfer)."""
        if str(job.kind) not in _EXPORTABLE or job.status not in FINAL:
            return ""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(job.export(Path(tmp) / f"job_{job.id}.csv")).read_bytes()
        except Exception as exc:  # an export that fails must not hide the tasks
            return html.escape(f"no export: {one_line(exc)}")
        return download_link(data, f"job_{job.id}.csv", f"Download the results of job {job.id}")

    def act(self, action: str) -> None:
        """Run an action on the chosen job; a refusal appears in the error line."""
        self.error.clear()
        job = self.job
        if job is None:
            self.error.show("choose a job first")
            return
        try:
            result = getattr(job, action)()
        except Exception as exc:
            self.error.show(exc)
            return
        note = f"job {job.id}: {action} done"
        if isinstance(result, int):
            note += f" ({result} task(s) queued again)"
        self.refresh()
        if action != "delete":
            self.show_job()
        self.error.note(html.unescape(note))

    def close(self) -> None:
        """Stop background work and close the widget."""
        self._follow.stop()
        self._poll.stop()
        self.chart.close()
        super().close()
