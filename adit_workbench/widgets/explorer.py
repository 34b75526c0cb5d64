"""Explorer: browse a node level by level (patients → studies → series → instances).

Breadcrumbs lead back up; the item chosen in the list shows its attributes as a table;
"Open" goes one level down; "Transfer this" sends the chosen study or series (or all
studies of a patient) to a destination through ``wb.transfer``. Every listing runs in
the background and can be abandoned by choosing something else.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from ._common import TABLE_STYLE, Background, ErrorLine, follow_job, node_picker, site_banner

__all__ = ["Explorer"]

_LEVELS = ("patients", "studies", "series", "instances")


def _label(item: Any) -> str:
    """One line per result, without the UIDs a person cannot read."""
    if hasattr(item, "sop_instance_uid"):
        return f"#{item.instance_number or '?'}  {item.sop_instance_uid}"
    if hasattr(item, "series_uid"):
        count = f"{item.instance_count} images" if item.instance_count is not None else ""
        return f"#{item.series_number or '?'}  {item.modality}  {item.description}  {count}"
    if hasattr(item, "study_uid"):
        when = item.study_date.isoformat() if item.study_date else "no date"
        modalities = ",".join(item.modalities)
        return f"{when}  {modalities}  {item.description}  ({item.accession_number})"
    born = item.birth_date.isoformat() if item.birth_date else ""
    return f"{item.patient_id}  {item.patient_name}  {born}"


def _png(picture: Any) -> bytes:
    """PNG bytes from what a thumbnail call may return: bytes, a PIL image or a reprable."""
    if isinstance(picture, bytes | bytearray | memoryview):
        return bytes(picture)
    # The workbench's own Picture has a save(path) too: ask for its PNG first.
    if callable(getattr(picture, "_repr_png_", None)):
        return bytes(picture._repr_png_())
    if hasattr(picture, "save"):  # PIL.Image
        import io

        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(f"a thumbnail came as {type(picture).__name__}, not a PNG")


def _crumb(item: Any) -> str:
    if hasattr(item, "sop_instance_uid"):
        return f"instance {item.instance_number or ''}"
    if hasattr(item, "series_uid"):
        return f"series {item.series_number or ''} {item.modality}"
    if hasattr(item, "study_uid"):
        return f"study {item.study_date or ''} {','.join(item.modalities)}"
    return f"patient {item.patient_id}"


class _Thumbnails:
    """PNG thumbnails per (node, series or instance), fetched one at a time in a thread.

    Choosing a series starts its thumbnail (a C-FIND of the series' instances and a
    C-GET of the middle one), so that the click on "Thumbnail" mostly finds it fetched;
    choosing another series first drops the fetch that has not started yet. Fetched
    pictures are kept (the last :attr:`KEEP`): going back to a series shows it at once.
    """

    KEEP = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: OrderedDict[tuple[str, str], Future[bytes]] = OrderedDict()

    @staticmethod
    def key(node: str, item: Any) -> tuple[str, str]:
        uid = getattr(item, "sop_instance_uid", "") or getattr(item, "series_uid", "")
        return str(node), str(uid)

    def get(self, node: str, item: Any) -> Future[bytes]:
        """The thumbnail's future: a kept or running one, else a new fetch."""
        key = self.key(node, item)
        with self._lock:
            future = self._futures.get(key)
            if future is not None and not future.cancelled():
                self._futures.move_to_end(key)
                return future
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="aw-thumbnail")
            future = self._pool.submit(lambda: _png(item.thumbnail()))
            self._futures[key] = future
            while len(self._futures) > self.KEEP:
                self._futures.popitem(last=False)
            return future

    def prefetch(self, node: str, item: Any) -> None:
        """Start ``item``'s thumbnail, dropping queued fetches of items chosen before."""
        key = self.key(node, item)
        with self._lock:
            for other, future in list(self._futures.items()):
                if other != key and future.cancel():  # only what has not started
                    del self._futures[other]
        self.get(node, item)

    def forget(self, node: str, item: Any) -> None:
        """Drop a failed fetch, so that the next click tries again."""
        with self._lock:
            self._futures.pop(self.key(node, item), None)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._futures.clear()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Step:
    """One level on the path: the item opened (None for the node) and what it lists."""

    item: Any
    level: str
    children: list[Any]


class Explorer(widgets.VBox):
    """The DICOM explorer as one widget: ``Explorer(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-explorer")
        self.wb = wb
        self.node = node_picker(wb, "source", "Node")
        self.crumbs = widgets.HBox()
        self.crumbs.add_class("aw-crumbs")
        self.status = widgets.HTML()
        self.status.add_class("aw-count")
        self.listing = widgets.Select(options=[], rows=14, layout={"width": "44em"})
        self.listing.add_class("aw-listing")
        self.open_button = widgets.Button(description="Open", icon="folder-open", disabled=True)
        self.open_button.add_class("aw-open")
        self.metadata = widgets.HTML()
        # Thumbnails only where the results offer them (``series.thumbnail()``).
        self.thumbnail_button = widgets.Button(description="Thumbnail", icon="image",
                                               layout={"display": "none"})  # fmt: skip
        self.thumbnail_button.add_class("aw-thumbnail-button")
        hidden = {"max_width": "256px", "display": "none"}
        self.thumbnail = widgets.Image(format="png", layout=hidden)
        self.thumbnail.add_class("aw-thumbnail")
        self._thumbs = Background()
        self._thumb_cache = _Thumbnails()
        self.metadata.add_class("aw-metadata")
        self.error = ErrorLine()
        self.destination = node_picker(wb, "destination", "To")
        self.transfer_button = widgets.Button(description="Transfer this", icon="paper-plane",
                                              button_style="success", disabled=True)  # fmt: skip
        self.transfer_button.add_class("aw-transfer")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "20em"})
        self.job_line = widgets.HTML()
        self.job_line.add_class("aw-job")
        self.job: Any = None
        self._path: list[_Step] = []
        self._loader = Background(on_busy=self._busy)
        self._transfer = Background()

        self.node.observe(lambda _c: self.open_node(), names="value")
        self.listing.observe(self._chosen, names="value")
        self.open_button.on_click(lambda _b: self.open_selected())
        self.thumbnail_button.on_click(lambda _b: self.show_thumbnail())
        self.transfer_button.on_click(lambda _b: self.transfer_selected())
        self.children = (
            widgets.HTML("<h3>DICOM explorer</h3>"),
            site_banner(wb),
            self.node,
            self.crumbs,
            self.status,
            self.error,
            widgets.HBox([self.listing, self.metadata, self.thumbnail]),
            widgets.HBox(
                [self.open_button, self.thumbnail_button, self.destination, self.transfer_button]
            ),
            widgets.HBox([self.progress, self.job_line]),
        )
        if self.node.value:
            self.open_node()

    # -- navigation ---------------------------------------------------------------------
    @property
    def level(self) -> str:
        """What the list shows now: patients, studies, series or instances."""
        return self._path[-1].level if self._path else _LEVELS[0]

    @property
    def selected(self) -> Any:
        """The result chosen in the list (None when nothing is)."""
        index = self.listing.value
        if index is None or not self._path:
            return None
        return self._path[-1].children[index]

    def open_node(self) -> None:
        """List the patients of the chosen node."""
        self._path = []
        name = self.node.value
        if not name:
            self.error.show("you may not use any node as a source")
            return
        self._load(None, "patients", lambda: list(self.wb.node(name).find_patients()))

    def open_selected(self) -> None:
        """Go one level down from the chosen item."""
        item = self.selected
        if item is None or self.level == "instances":
            return
        level = _LEVELS[_LEVELS.index(self.level) + 1]
        fetch: dict[str, Callable[[], list[Any]]] = {
            "studies": lambda: list(item.studies()),
            "series": lambda: list(item.series()),
            "instances": lambda: list(item.instances()),
        }
        self._load(item, level, fetch[level])

    def back_to(self, depth: int) -> None:
        """Return to the ``depth``-th level of the path (0: the node's patients)."""
        self._loader.stop()
        del self._path[depth + 1 :]
        self._show()

    def _load(self, item: Any, level: str, fetch: Callable[[], list[Any]]) -> None:
        self.error.clear()
        self.status.value = f"loading {level}…"

        def work(stop: threading.Event) -> list[Any]:
            return fetch()

        def done(children: list[Any]) -> None:
            self._path.append(_Step(item, level, children))
            self._show()

        def failed(exc: BaseException) -> None:
            self.status.value = ""
            self.error.show(exc)

        self._loader.start(work, done, failed)

    def _show(self) -> None:
        step = self._path[-1] if self._path else None
        children = step.children if step else []
        buttons = []
        for depth, s in enumerate(self._path):
            text = self.node.value if s.item is None else _crumb(s.item)
            button = widgets.Button(description=str(text), layout={"width": "auto"})
            button.add_class("aw-crumb")
            button.on_click(lambda _b, d=depth: self.back_to(d))
            buttons.append(button)
        self.crumbs.children = tuple(buttons)
        self.listing.value = None
        self.listing.options = [(_label(c), i) for i, c in enumerate(children)]
        self.metadata.value = ""
        self.open_button.disabled = True
        self.transfer_button.disabled = True
        # Last: tests and people take the count as the sign that the level is shown.
        self.status.value = html.escape(f"{len(children)} {self.level}")

    def _chosen(self, _change: Any) -> None:
        item = self.selected
        self.open_button.disabled = item is None or self.level == "instances"
        self.transfer_button.disabled = item is None or self.level == "instances"
        if item is None:
            self.metadata.value = ""
            return
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
            f"<td>{html.escape('' if v is None else str(v))}</td></tr>"
            for k, v in item.row().items()
        )
        self.metadata.value = f'{TABLE_STYLE}<table class="aw-table aw-meta">{rows}</table>'
        self.thumbnail.value = b""
        self.thumbnail.layout.display = "none"
        offers = callable(getattr(item, "thumbnail", None))
        self.thumbnail_button.layout.display = "" if offers else "none"
        if offers and self.level == "series" and self.node.value:
            self._thumb_cache.prefetch(self.node.value, item)

    def show_thumbnail(self) -> None:
        """Fetch the chosen item's thumbnail in the background (PNG bytes or an image)."""
        item = self.selected
        if item is None or not callable(getattr(item, "thumbnail", None)):
            return

        node = str(self.node.value)
        future = self._thumb_cache.get(node, item)

        def work(stop: threading.Event) -> bytes:
            return future.result()

        def done(data: bytes) -> None:
            self.error.clear()
            self.thumbnail.value = data
            self.thumbnail.layout.display = ""

        def failed(exc: BaseException) -> None:
            self._thumb_cache.forget(node, item)
            self.error.show(exc)

        self._thumbs.start(work, done, failed)

    def _busy(self, busy: bool) -> None:
        self.listing.disabled = busy

    # -- transfer -----------------------------------------------------------------------
    def transfer_selected(self) -> None:
        """Transfer the chosen study, series or patient (all their studies)."""
        item, source, destination = self.selected, self.node.value, self.destination.value
        if item is None:
            return
        if not destination:
            self.error.show("you may not use any node as a destination")
            return
        self.error.clear()
        self.job_line.value = "creating the job…"

        def work(stop: threading.Event) -> Any:
            what = list(item.studies()) if self.level == "patients" else [item]
            self.job = self.wb.transfer(what, to=destination, source=source)
            return follow_job(self.job, self.progress, self.job_line, stop)

        def failed(exc: BaseException) -> None:
            self.job_line.value = ""
            self.error.show(exc)

        self._transfer.start(work, lambda _s: None, failed)

    def close(self) -> None:
        """Stop background work and close the widget."""
        self._loader.stop()
        self._transfer.stop()
        self._thumbs.stop()
        self._thumb_cache.close()
        super().close()
