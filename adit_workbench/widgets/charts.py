"""The jobs dashboard's chart: instances transferred per day and instances per modality.

Everything comes from the facade, so it draws the same over the embedded and the
service backend: the job handles' ``summary()`` (kind, status, created) and ``progress``
(instances done), and ``wb.jobs.instances_per_modality(ids)``: what each job's transfer
tasks delivered, per modality, as they recorded it when they ended. Jobs whose tasks
recorded none (run by an older version) fall back: a mass transfer to its result table
(``results.df``: modality and number of images per exported series; its progress counts
studies), a selective or batch transfer to :data:`UNRECORDED`. Instances of running
tasks count under :data:`UNRECORDED` until their task ends.

matplotlib (already in the ``jupyter`` extra for ``Results.plot()``) draws into a
:class:`~matplotlib.figure.Figure` with the Agg canvas: no pyplot, so no global backend
and nothing shown twice in a notebook; the PNG goes into an ``ipywidgets.Image``. It is
imported when the first chart is drawn, in the background, so the dashboard's first
render does not wait on it.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import ipywidgets as widgets

from ._common import FINAL, Background, ErrorLine

__all__ = ["UNRECORDED", "JobChart", "TransferStats", "collect_stats", "render_png"]

#: Job kinds that move instances.
TRANSFER_KINDS = frozenset({"selective_transfer", "batch_transfer", "mass_transfer"})
#: The modality bar for instances whose jobs did not record one.
UNRECORDED = "not recorded"


@dataclass
class TransferStats:
    """Instances transferred per day (job creation date) and per modality."""

    per_day: Counter[date] = field(default_factory=Counter)
    per_modality: Counter[str] = field(default_factory=Counter)

    @property
    def empty(self) -> bool:
        """Whether no instance was transferred yet."""
        return not any(self.per_day.values())


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _job_counts(
    handle: Any, kind: str, recorded: Mapping[str, int] | None = None
) -> tuple[int, Counter[str]]:
    """Instances a job delivered, and per modality where the facade tells it."""
    modalities: Counter[str] = Counter()
    if recorded:
        for modality, n in recorded.items():
            modalities[str(modality) or UNRECORDED] += int(n)
        if kind == "mass_transfer":  # its progress counts studies, not instances
            return sum(modalities.values()), modalities
        done = int(handle.progress.items_done or 0)
        # Running tasks record theirs when they end; until then they are unrecorded.
        if done > sum(modalities.values()):
            modalities[UNRECORDED] += done - sum(modalities.values())
        return max(done, sum(modalities.values())), modalities
    if kind != "mass_transfer":
        done = int(handle.progress.items_done or 0)
        if done:
            modalities[UNRECORDED] = done
        return done, modalities
    # A mass transfer's progress counts studies; its result table has the images of
    # every exported series (where the source said how many).
    frame = handle.results.df
    if len(frame) and {"modality", "number_of_images", "status"} <= set(frame.columns):
        exported = frame[frame["status"] == "exported"]
        for modality, images in zip(exported["modality"], exported["number_of_images"],
                                    strict=True):  # fmt: skip
            if images is not None and images == images:  # None/NaN: the source did not say
                modalities[str(modality) or UNRECORDED] += int(images)
    return sum(modalities.values()), modalities


class _Cache:
    """Final jobs' counts, kept between refreshes (a final job never changes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.final: dict[int, tuple[date | None, int, Counter[str]]] = {}


def collect_stats(
    handles: Iterable[Any],
    summaries: Mapping[int, Mapping[str, Any]],
    cache: _Cache | None = None,
    jobs: Any = None,
) -> TransferStats:
    """Add up the transfer jobs among ``handles`` (``summaries`` by job id).

    ``jobs`` (``wb.jobs``) gives the instances per modality the tasks recorded; without
    it every job takes the fallback described in the module docstring.
    """
    stats = TransferStats()
    todo: list[tuple[Any, Mapping[str, Any], str]] = []
    for handle in handles:
        summary = summaries.get(handle.id) or handle.summary()
        kind = str(summary.get("kind", ""))
        if kind in TRANSFER_KINDS:
            todo.append((handle, summary, kind))
    uncached = [h.id for h, _s, _k in todo]
    if cache is not None:
        with cache.lock:
            uncached = [i for i in uncached if i not in cache.final]
    # One request for every job still to count, not one per job.
    recorded = jobs.instances_per_modality(uncached) if jobs is not None and uncached else {}
    for handle, summary, kind in todo:
        known = None
        if cache is not None:
            with cache.lock:
                known = cache.final.get(handle.id)
        if known is None:
            done, modalities = _job_counts(handle, kind, recorded.get(handle.id))
            known = (_day(summary.get("created")), done, modalities)
            if cache is not None and summary.get("status") in FINAL:
                with cache.lock:
                    cache.final[handle.id] = known
        day, done, modalities = known
        if done and day is not None:
            stats.per_day[day] += done
        stats.per_modality.update(modalities)
    return stats


def render_png(stats: TransferStats, *, width: float = 9.0, height: float = 2.8) -> bytes:
    """The two bar charts side by side as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    over_time, by_modality = figure.subplots(1, 2, width_ratios=(3, 2))
    days = sorted(stats.per_day)
    over_time.bar([d.isoformat() for d in days], [stats.per_day[d] for d in days],
                  color="#4c78a8")  # fmt: skip
    # A few days' bars keep a bar's width instead of filling the whole axes.
    over_time.set_xlim(-0.75, max(len(days), 7) - 0.25)
    over_time.set_title("Instances transferred per day", fontsize=10)
    over_time.tick_params(axis="x", labelrotation=30, labelsize=8)
    modalities = sorted(stats.per_modality, key=lambda m: (m == UNRECORDED, m))
    counts = [stats.per_modality[m] for m in modalities]
    colours = ["#bbbbbb" if m == UNRECORDED else "#f58518" for m in modalities]
    by_modality.barh(modalities, counts, color=colours)
    by_modality.invert_yaxis()
    by_modality.set_title("Instances per modality", fontsize=10)
    for axes in (over_time, by_modality):
        axes.spines[["top", "right"]].set_visible(False)
    if stats.empty:
        over_time.text(0.5, 0.5, "no transfers yet", ha="center", va="center",
                       transform=over_time.transAxes, color="#777")  # fmt: skip
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


class JobChart(widgets.VBox):
    """The chart as a widget; :meth:`update` redraws it in the background."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-job-chart")
        self.wb = wb
        # Shown at its own size (9 x 2.8 inches at 90 dpi), not stretched to the page.
        self.image = widgets.Image(format="png", layout={"width": "810px", "max_width": "100%"})
        self.image.add_class("aw-chart-image")
        self.error = ErrorLine()
        self.stats: TransferStats | None = None
        self._cache = _Cache()
        self._drawn: tuple[Any, ...] | None = None
        self._work = Background()
        self._lock = threading.Lock()
        self._busy = False
        self._pending: tuple[list[Any], dict[int, Mapping[str, Any]]] | None = None
        self.children = (self.error, self.image)

    def update(self, handles: list[Any], summaries: Mapping[int, Mapping[str, Any]]) -> None:
        """Redraw from these jobs unless nothing changed since the last drawing.

        A drawing in progress is not abandoned for a newer one (under load a chart
        could then never finish): the newest request waits and runs after it.
        """
        key = tuple(sorted((i, str(s.get("status")), s.get("finished")) for i, s in
                           summaries.items()))  # fmt: skip
        running = any(s.get("status") not in FINAL for s in summaries.values())
        if key == self._drawn and not running:
            return
        with self._lock:
            if self._busy:
                self._pending = (handles, dict(summaries))
                return
            self._busy, self._pending = True, None

        def work(_stop: threading.Event) -> tuple[TransferStats, bytes]:
            stats = collect_stats(handles, summaries, self._cache, self.wb.jobs)
            return stats, render_png(stats)

        def done(result: tuple[TransferStats, bytes]) -> None:
            self.stats, self.image.value = result
            self._drawn = key
            self.error.clear()
            self._next()

        def failed(exc: BaseException) -> None:
            self.error.show(exc)
            self._next()

        self._work.start(work, done, failed)

    def _next(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            self._busy = False
        if pending is not None:
            # Run from a fresh thread: this one is still the finishing worker.
            threading.Thread(target=self.update, args=pending, daemon=True).start()

    def close(self) -> None:
        """Stop a drawing in progress and close the widget."""
        self._work.stop()
        with self._lock:
            self._pending, self._busy = None, False
        super().close()
