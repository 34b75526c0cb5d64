"""Pieces every widget shares: node pickers, the error line, a background runner, job
progress, a selectable table and a download link.

Only the public facade is used (``wb.node_specs()``, ``wb.access``, job handles), so the
widgets work the same over the embedded and the remote backend.

Threads: ipykernel sends comm messages from any thread, so a background thread may set
widget traits (``value``, ``max`` …) directly; it never writes into an ``Output`` context,
whose capture is bound to the thread that entered it.
"""

from __future__ import annotations

import base64
import html
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from ..errors import WorkbenchError
from ..jobs import JobStatus

__all__ = [
    "FINAL",
    "TABLE_STYLE",
    "Background",
    "ErrorLine",
    "SelectableTable",
    "download_link",
    "follow_job",
    "has_permission",
    "html_table",
    "node_picker",
    "one_line",
    "site_banner",
]

#: Job statuses after which nothing changes any more.
FINAL = frozenset({JobStatus.SUCCESS, JobStatus.WARNING, JobStatus.FAILURE, JobStatus.CANCELED})

_STATUS_STYLE = {
    JobStatus.SUCCESS: "success",
    JobStatus.WARNING: "warning",
    JobStatus.FAILURE: "danger",
    JobStatus.CANCELED: "warning",
}


def one_line(exc: BaseException) -> str:
    """An error as one readable line: the workbench's own message, else type and text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, WorkbenchError):
        return text or type(exc).__name__
    # Not ours: say what it was without a traceback (the message may be empty).
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ErrorLine(widgets.HTML):
    """One line in red (errors) or grey (information); empty when there is nothing to say."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("aw-error")

    def show(self, problem: BaseException | str) -> None:
        """Show an error (an exception is reduced to :func:`one_line`)."""
        text = problem if isinstance(problem, str) else one_line(problem)
        self.value = f'<span style="color:#b00020">&#9888; {html.escape(text)}</span>'

    def note(self, text: str) -> None:
        """Show a neutral message."""
        self.value = f'<span style="color:#555">{html.escape(text)}</span>'

    def clear(self) -> None:
        """Say nothing."""
        self.value = ""


def has_permission(wb: Any, permission: str) -> bool:
    """Whether the workbench's user holds ``permission`` (False if it cannot tell)."""
    try:
        return bool(wb.access.has(permission))
    except Exception:  # an unknown permission or an unreachable service hides the control
        return False


def site_banner(wb: Any) -> widgets.HTML:
    """The site's announcement and maintenance mode as a banner (empty when neither)."""
    banner = widgets.HTML()
    banner.add_class("aw-announcement")
    try:
        status = wb.access.site_status()
    except Exception:  # a banner must never keep a dashboard from showing
        return banner
    parts = ["Maintenance: new jobs are refused."] if status.maintenance else []
    if status.announcement:
        parts.append(status.announcement)
    if parts:
        banner.value = (
            '<div style="background:#fff3cd;border:1px solid #e0c36c;padding:4px 8px">'
            f"{html.escape(' '.join(parts))}</div>"
        )
    return banner


def node_picker(wb: Any, role: str | None, description: str) -> widgets.Dropdown:
    """A dropdown of the nodes the user may use in ``role`` (``source``/``destination``)."""
    specs = wb.node_specs()
    if role is not None:
        # Preselect what the role usually is: a server as source, a folder as destination.
        folder_first = role == "destination"
        specs = sorted(specs, key=lambda s: (hasattr(s, "path") != folder_first, s.name))
    names = [spec.name for spec in specs]
    if role is not None:
        allowed = set(wb.access.visible_nodes(role))
        names = [n for n in names if n in allowed]
    picker = widgets.Dropdown(
        options=names,
        value=names[0] if names else None,
        description=description,
        style={"description_width": "initial"},
    )
    picker.add_class(f"aw-{role or 'node'}-picker")
    return picker


class Background:
    """Runs one piece of work at a time in a daemon thread; ``stop()`` abandons it.

    The work gets a :class:`threading.Event` that is set on ``stop()``; it should look at
    it between steps. A stopped run's ``done``/``failed`` callbacks are not called, so a
    late answer never overwrites what the user started next.
    """

    def __init__(self, on_busy: Callable[[bool], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_busy = on_busy

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._thread is not None and self._thread.is_alive()

    def start(
        self,
        work: Callable[[threading.Event], Any],
        done: Callable[[Any], None],
        failed: Callable[[BaseException], None],
    ) -> None:
        """Stop any current run, then run ``work`` and hand its result to ``done``."""
        self.stop()
        with self._lock:
            self._generation += 1
            generation = self._generation
            stop = self._stop = threading.Event()

        def run() -> None:
            try:
                result = work(stop)
            except BaseException as exc:
                if self._current(generation):
                    failed(exc)
            else:
                if self._current(generation):
                    done(result)
            finally:
                if self._current(generation) and self._on_busy is not None:
                    self._on_busy(False)

        if self._on_busy is not None:
            self._on_busy(True)
        self._thread = threading.Thread(target=run, name="aw-widget", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the current run to stop and forget its outcome."""
        with self._lock:
            self._stop.set()
            self._generation += 1
        if self._on_busy is not None and self._thread is not None:
            self._on_busy(False)

    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation


def follow_job(
    job: Any,
    bar: widgets.IntProgress,
    label: widgets.HTML,
    stop: threading.Event,
    *,
    poll: float = 0.5,
) -> JobStatus:
    """Mirror a job's progress into ``bar`` and ``label`` until it is final (or ``stop``)."""
    status = JobStatus.PENDING
    while not stop.is_set():
        progress = job.progress
        status = JobStatus(progress.status)
        bar.max = max(progress.total, 1)
        bar.value = progress.finished if progress.total else (1 if status in FINAL else 0)
        bar.bar_style = _STATUS_STYLE.get(status, "info")
        items = ""
        if progress.items_total:
            items = f", {progress.items_done}/{progress.items_total} instances"
        label.value = html.escape(
            f"job {job.id}: {status.value} - {progress.finished}/{progress.total} tasks{items}"
        )
        if status in FINAL:
            message = job.message
            if message:
                label.value += " - " + html.escape(message)
            break
        time.sleep(poll)
    return status


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], css: str = "") -> str:
    """Rows as an HTML table (values escaped; missing and NaN/None cells empty)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return (
        f'{TABLE_STYLE}<table class="aw-table {css}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


TABLE_STYLE = (
    "<style>.aw-table{border-collapse:collapse;margin:4px 0}"
    ".aw-table th,.aw-table td{padding:2px 10px;text-align:left;"
    "border-bottom:1px solid #ddd;white-space:nowrap}"
    ".aw-table th{background:#f3f3f3}</style>"
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    try:
        if value != value:  # NaN, NaT
            return ""
    except (TypeError, ValueError):
        pass
    if hasattr(value, "isoformat"):
        return value.isoformat()[:10] if hasattr(value, "date") else value.isoformat()
    return str(value)


def download_link(data: bytes, filename: str, text: str) -> str:
    """An HTML link that saves ``data`` as ``filename`` in the browser (no server round trip)."""
    encoded = base64.b64encode(data).decode("ascii")
    mime = "text/csv" if filename.endswith(".csv") else "application/octet-stream"
    return (
        f'<a class="aw-download" download="{html.escape(filename)}" '
        f'href="data:{mime};base64,{encoded}">{html.escape(text)}</a>'
    )


class SelectableTable(widgets.VBox):
    """Rows with a checkbox each, sortable by clicking a column header.

    ``rows`` are dicts (shown ``columns`` only); ``selected`` gives the chosen rows' keys.
    """

    def __init__(self, columns: Sequence[str], *, key: str, widths: Mapping[str, str] = {}):
        super().__init__()
        self.add_class("aw-results")
        self._columns = list(columns)
        self._key = key
        self._widths = dict(widths)
        self._rows: list[dict[str, Any]] = []
        self._checks: dict[str, widgets.Checkbox] = {}
        self._lines: dict[str, widgets.HBox] = {}
        self._sort: tuple[str, bool] | None = None
        self._all = widgets.Checkbox(value=False, indent=False, layout={"width": "2em"})
        self._all.observe(self._toggle_all, names="value")
        self._header = widgets.HBox([self._all, *self._header_buttons()])
        self._body = widgets.VBox()
        self.children = (self._header, self._body)

    def _width(self, column: str) -> str:
        return self._widths.get(column, "9em")

    def _header_buttons(self) -> list[widgets.Button]:
        buttons = []
        for column in self._columns:
            button = widgets.Button(description=column, layout={"width": self._width(column)})
            button.add_class("aw-sort")
            button.on_click(lambda _b, c=column: self.sort_by(c))
            buttons.append(button)
        return buttons

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows as shown (in their current order)."""
        return list(self._rows)

    def clear(self) -> None:
        """Remove every row."""
        self._rows = []
        self._checks = {}
        self._lines = {}
        self._all.value = False
        self._body.children = ()

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows (as results stream in)."""
        new = [dict(r) for r in rows]
        self._rows.extend(new)
        self._body.children = (*self._body.children, *(self._row_widget(r) for r in new))

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; a second click on it reverses the order."""
        descending = self._sort == (column, False)
        self._sort = (column, descending)
        self._rows.sort(key=lambda r: (_cell(r.get(column)) == "", _cell(r.get(column))),
                        reverse=descending)  # fmt: skip
        self._body.children = tuple(self._lines[str(r[self._key])] for r in self._rows)

    def _row_widget(self, row: Mapping[str, Any]) -> widgets.HBox:
        key = str(row[self._key])
        check = widgets.Checkbox(value=False, indent=False, layout={"width": "2em"})
        check.add_class("aw-row-check")
        self._checks[key] = check
        cells = "".join(
            f'<span style="display:inline-block;width:{self._width(c)};overflow:hidden;'
            f'white-space:nowrap;text-overflow:ellipsis">{html.escape(_cell(row.get(c)))}</span>'
            for c in self._columns
        )
        line = widgets.HBox([check, widgets.HTML(cells)])
        line.add_class("aw-row")
        self._lines[key] = line
        return line

    def _toggle_all(self, change: Mapping[str, Any]) -> None:
        for check in self._checks.values():
            check.value = bool(change["new"])

    @property
    def selected(self) -> list[str]:
        """Keys of the checked rows, in display order."""
        return [str(r[self._key]) for r in self._rows if self._checks[str(r[self._key])].value]
