"""Upload: a folder of DICOM files, pseudonymized, to a PACS or folder node.

The folder is a path on the machine the kernel runs on: Voilà and notebooks run on the
user's own server (their JupyterHub server, or their laptop), which is where their
files already are (uploaded with JupyterLab's file browser, mounted, or written by a
script). A browser-side file picker (``FileUpload``) would push every byte through the
widget comm, held whole in the kernel's memory: fine for a few files, not for a series
of hundreds of megabytes, so it is not offered.

The upload itself is ``wb.upload`` (the service pseudonymizes under the hub; the secret
never reaches the kernel). It runs in a background thread; the bar counts files as they
are read, "Stop" ends the upload after the file in hand (what was stored stays), and
every refused file is listed with its reason.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._common import Background, ErrorLine, html_table, node_picker, site_banner

if TYPE_CHECKING:
    from ..jobs.upload import UploadItem, UploadResult

__all__ = ["Upload"]


def _text(name: str, label: str, placeholder: str = "", width: str = "20em") -> widgets.Text:
    field = widgets.Text(description=label, placeholder=placeholder,
                         style={"description_width": "8em"}, layout={"width": width})  # fmt: skip
    field.add_class(f"aw-field-{name}")
    return field


def _may_upload(wb: Any) -> bool:
    """Whether to show the controls: hidden when the user surely lacks ``upload``
    (a client that cannot tell shows them; the service refuses the call anyway)."""
    access = getattr(wb, "access", None)
    if access is None:
        return True
    try:
        return bool(access.has("upload"))
    except Exception:  # unreachable: show the form, the call will say what is wrong
        return True


def _destinations(wb: Any) -> widgets.Dropdown:
    try:
        return node_picker(wb, "destination", "Destination")
    except AttributeError:  # a client without role information lists every node
        return node_picker(wb, None, "Destination")


class Upload(widgets.VBox):
    """The upload dashboard as one widget: ``Upload(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-upload")
        self.wb = wb
        self.result: UploadResult | None = None
        header = [widgets.HTML("<h3>Upload</h3>"), site_banner(wb)]
        if not _may_upload(wb):
            note = widgets.HTML("You need the <code>upload</code> permission to upload "
                                "studies; ask an admin.")  # fmt: skip
            note.add_class("aw-upload-denied")
            self.children = (*header, note)
            return
        self.folder = _text("folder", "Folder", "/path/to/dicom/folder", "40em")
        self.check_button = widgets.Button(description="Check folder", icon="folder-open")
        self.check_button.add_class("aw-check-folder")
        self.folder_info = widgets.HTML()
        self.folder_info.add_class("aw-folder-info")
        self.destination = _destinations(wb)
        self.pseudonym = _text("pseudonym", "Pseudonym", "one patient per upload")
        self.trial_protocol_id = _text("trial_protocol_id", "Trial ID")
        self.trial_protocol_name = _text("trial_protocol_name", "Trial name")
        self.project_name = _text("project_name", "Project", "default")
        self.start_button = widgets.Button(description="Upload", icon="upload",
                                           button_style="success")  # fmt: skip
        self.start_button.add_class("aw-start")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.add_class("aw-stop")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "30em"})
        self.progress.add_class("aw-progress")
        self.status = widgets.HTML()
        self.status.add_class("aw-upload-status")
        self.error = ErrorLine()
        self.summary = widgets.HTML()
        self.summary.add_class("aw-upload-summary")
        self.refused = widgets.HTML()
        self.refused.add_class("aw-refused")
        self._count = Background()
        self._run = Background(on_busy=self._busy)
        self.check_button.on_click(lambda _b: self.check_folder())
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.children = (
            *header,
            widgets.HBox([self.folder, self.check_button]),
            self.folder_info,
            self.destination,
            widgets.HBox([self.pseudonym, self.project_name]),
            widgets.HBox([self.trial_protocol_id, self.trial_protocol_name]),
            self.error,
            widgets.HBox([self.start_button, self.stop_button, self.progress, self.status]),
            self.summary,
            self.refused,
        )

    def _busy(self, busy: bool) -> None:
        self.start_button.disabled = busy
        self.stop_button.disabled = not busy

    def check_folder(self) -> None:
        """Count the files below the folder (in the background) and show their size."""
        self.error.clear()
        folder = self.folder.value.strip()
        self.folder_info.value = "counting…"

        def work(stop: threading.Event) -> tuple[int, int]:
            from ..jobs.upload import iter_folder  # pydicom, in the background

            count = size = 0
            for _name, path in iter_folder(folder):
                if stop.is_set():
                    break
                count += 1
                size += path.stat().st_size if hasattr(path, "stat") else 0
            return count, size

        def done(found: tuple[int, int]) -> None:
            self.progress.max = max(found[0], 1)
            size = f"{found[1] / 1e6:.1f} MB" if found[1] >= 1e6 else f"{found[1] / 1e3:.0f} kB"
            self.folder_info.value = html.escape(
                f"{found[0]} files, {size} (files that are not DICOM are refused by name, "
                "the rest go through)"
            )

        def failed(exc: BaseException) -> None:
            self.folder_info.value = ""
            self.error.show(exc)

        self._count.start(work, done, failed)

    def start(self) -> None:
        """Upload the folder to the chosen destination."""
        self.error.clear()
        self.summary.value = self.refused.value = ""
        folder = self.folder.value.strip()
        destination = self.destination.value
        if not folder:
            self.error.show("give the folder to upload")
            return
        if not destination:
            self.error.show("you may not store to any node: ask an admin")
            return
        options = {
            "pseudonym": self.pseudonym.value.strip() or None,
            "trial_protocol_id": self.trial_protocol_id.value.strip() or None,
            "trial_protocol_name": self.trial_protocol_name.value.strip() or None,
            "project_name": self.project_name.value.strip() or None,
        }
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.status.value = "uploading…"

        def counted(stop: threading.Event) -> Iterator[UploadItem]:
            from ..jobs.upload import iter_folder

            for n, item in enumerate(iter_folder(folder), 1):
                if stop.is_set():
                    return
                if n > self.progress.max:
                    self.progress.max = n
                self.progress.value = n
                yield item

        def work(stop: threading.Event) -> UploadResult:
            result: UploadResult = self.wb.upload(counted(stop), destination=destination, **options)
            return result

        def done(result: UploadResult) -> None:
            self.result = result
            self.progress.max = max(result.total, 1)
            self.progress.value = result.total
            self.progress.bar_style = "success" if result.ok else "warning"
            self.status.value = ""
            self.summary.value = html.escape(f"{destination}: {result.summary()}")
            if result.refused:
                rows = [{"file": name, "why refused": why} for name, why in result.refused]
                self.refused.value = html_table(rows, ["file", "why refused"])

        def failed(exc: BaseException) -> None:
            self.progress.bar_style = "danger"
            self.status.value = ""
            self.error.show(exc)

        self._run.start(work, done, failed)

    def stop(self) -> None:
        """Stop after the file in hand; what was stored stays stored."""
        self._run.stop()
        self.status.value = "stopped"

    def close(self) -> None:
        """Stop background work and close the widget."""
        self._count.stop()
        self._run.stop()
        super().close()
