"""Selective transfer: search a source node, tick studies, transfer them to a destination.

Like ADIT's selective transfer page: the pickers list only the nodes the user may use in
that role, results stream into the table while the node answers (a search can be
stopped), and "Transfer" creates one job through ``wb.transfer`` and follows its progress.
Controls for options that need a permission (urgent, unpseudonymized) are only built
when the user holds it; the job layer checks again anyway.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets

from ._common import Background, ErrorLine, SelectableTable, node_picker, site_banner
from ._forms import JobRunner, PermissionFlags, text_field

__all__ = ["SelectiveTransfer"]

#: Columns of the results table (DICOM keywords, as in ``Results.df``).
COLUMNS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyDate",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
)
_WIDTHS = {
    "PatientName": "12em",
    "StudyDescription": "16em",
    "ModalitiesInStudy": "6em",
    "NumberOfStudyRelatedSeries": "5em",
    "PatientBirthDate": "7em",
    "StudyDate": "7em",
}
#: Columns of the series table (a series row also names its study).
SERIES_COLUMNS = (
    "PatientID",
    "StudyDate",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)
#: Seconds between table refreshes while results stream in (each refresh is a comm message).
_FLUSH_EVERY = 0.3


class SelectiveTransfer(widgets.VBox):
    """The selective-transfer dashboard as one widget: ``SelectiveTransfer(wb)``."""

    def __init__(self, wb: Any) -> None:
        super().__init__()
        self.add_class("aw-selective-transfer")
        self.wb = wb
        self.source = node_picker(wb, "source", "Source")
        self.destination = node_picker(wb, "destination", "Destination")
        self.fields = {
            "patient_id": text_field("patient_id", "Patient ID", "e.g. 1001 or 10*"),
            "patient_name": text_field("patient_name", "Patient name", "Last, First or LAST*"),
            "patient_birth_date": text_field("patient_birth_date", "Birth date", "YYYY-MM-DD"),
            "accession_number": text_field("accession_number", "Accession"),
            "study_date_from": text_field("study_date_from", "Study from", "YYYY-MM-DD"),
            "study_date_until": text_field("study_date_until", "Study until", "YYYY-MM-DD"),
            "modality": text_field("modality", "Modalities", "CT, MR"),
            "study_description": text_field("study_description", "Description", "*BRAIN*"),
        }
        self.search_button = widgets.Button(description="Search", button_style="primary",
                                            icon="search")  # fmt: skip
        self.search_button.add_class("aw-search")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.stop_button.add_class("aw-stop")
        self.count = widgets.HTML()
        self.count.add_class("aw-count")
        self.error = ErrorLine()
        self.table = SelectableTable(COLUMNS, key="StudyInstanceUID", widths=_WIDTHS)
        # Series choice: the ticked studies' series; ticking some sends only those.
        self.series_button = widgets.Button(description="Choose series…", icon="list")
        self.series_button.add_class("aw-choose-series")
        self.series_table = SelectableTable(SERIES_COLUMNS, key="SeriesInstanceUID",
                                            widths=_WIDTHS)  # fmt: skip
        self.series_table.add_class("aw-series-results")
        self.series_table.layout.display = "none"
        self._series: dict[str, dict[str, str]] = {}
        self._studies: dict[str, Any] = {}

        # Transfer options; permission-bound ones exist only for users who hold them.
        self.pseudonym = text_field("pseudonym", "Pseudonym", "empty: derived per patient")
        self.trial_protocol_id = text_field("trial_protocol_id", "Trial ID")
        self.trial_protocol_name = text_field("trial_protocol_name", "Trial name")
        self.project_name = text_field("project_name", "Project")
        self.archive_password = widgets.Password(
            description="Archive password", style={"description_width": "8em"},
            layout={"width": "20em"},
        )  # fmt: skip
        self.archive_password.add_class("aw-field-archive_password")
        self.nifti = widgets.Checkbox(description="Convert to NIfTI", indent=False)
        self.nifti.add_class("aw-nifti")
        self.flags = PermissionFlags(wb)
        self.urgent, self.unpseudonymized = self.flags.urgent, self.flags.unpseudonymized
        self.transfer_button = widgets.Button(description="Transfer", button_style="success",
                                              icon="paper-plane")  # fmt: skip
        self.transfer_button.add_class("aw-transfer")
        self.runner = JobRunner(self.transfer_button, self.error.show)
        self.progress, self.job_line = self.runner.progress, self.runner.line

        self._search = Background(on_busy=self._searching)
        self.search_button.on_click(lambda _b: self.search())
        self.stop_button.on_click(lambda _b: self.stop())
        self.transfer_button.on_click(lambda _b: self.transfer())
        self.series_button.on_click(lambda _b: self.choose_series())

        f = self.fields
        form = widgets.HBox([
            widgets.VBox([f["patient_id"], f["patient_name"], f["patient_birth_date"]]),
            widgets.VBox([f["accession_number"], f["study_date_from"], f["study_date_until"]]),
            widgets.VBox([f["modality"], f["study_description"]]),
        ])  # fmt: skip
        options = widgets.HBox([
            widgets.VBox([self.pseudonym, self.project_name]),
            widgets.VBox([self.trial_protocol_id, self.trial_protocol_name]),
            widgets.VBox([self.archive_password, self.nifti, *self.flags.widgets]),
        ])  # fmt: skip
        self.children = (
            widgets.HTML("<h3>Selective transfer</h3>"),
            site_banner(wb),
            widgets.HBox([self.source, self.destination]),
            form,
            widgets.HBox([self.search_button, self.stop_button, self.count]),
            self.error,
            self.table,
            self.series_button,
            self.series_table,
            widgets.HTML("<b>Transfer options</b>"),
            options,
            widgets.HBox([self.transfer_button, self.progress]),
            self.job_line,
        )

    # -- searching ----------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        """The search form as query filters (empty fields left out)."""
        values = {name: field.value.strip() for name, field in self.fields.items()}
        filters: dict[str, Any] = {}
        for name in ("patient_id", "patient_name", "patient_birth_date", "accession_number",
                     "study_description"):  # fmt: skip
            if values[name]:
                filters[name] = values[name]
        if values["study_date_from"] or values["study_date_until"]:
            filters["study_date"] = (values["study_date_from"] or None,
                                     values["study_date_until"] or None)  # fmt: skip
        modalities = [m.strip().upper() for m in values["modality"].split(",") if m.strip()]
        if modalities:
            filters["modality"] = modalities if len(modalities) > 1 else modalities[0]
        return filters

    def search(self) -> None:
        """Start a search in the background (a running one is abandoned)."""
        self.error.clear()
        self.table.clear()
        self._studies = {}
        self._clear_series()
        source = self.source.value
        if not source:
            self.error.show("no source node: you may not use any node as a source")
            return
        filters = self.filters()
        self.count.value = "searching…"
        self._search.start(lambda stop: self._run_search(source, filters, stop),
                           self._search_done, self._search_failed)  # fmt: skip

    def _run_search(self, source: str, filters: dict[str, Any], stop: threading.Event) -> int:
        node = self.wb.node(source)
        stream = getattr(node, "iter_studies", None)
        results = stream(**filters) if stream is not None else node.find_studies(**filters)
        pending: list[Any] = []
        shown = 0
        last = time.monotonic()
        for study in results:
            if stop.is_set():
                break
            pending.append(study)
            if time.monotonic() - last >= _FLUSH_EVERY:
                shown += self._show(pending)
                pending, last = [], time.monotonic()
                self.count.value = f"{shown} studies so far…"
        if not stop.is_set():
            shown += self._show(pending)
        close = getattr(results, "close", None)
        if close is not None:
            close()
        return shown

    def _show(self, studies: list[Any]) -> int:
        rows = []
        for study in studies:
            if study.study_uid in self._studies:
                continue
            self._studies[study.study_uid] = study
            rows.append(study.row())
        self.table.add(rows)
        return len(rows)

    def _search_done(self, shown: int) -> None:
        self.count.value = f"{shown} {'study' if shown == 1 else 'studies'} found"

    def _search_failed(self, exc: BaseException) -> None:
        self.count.value = ""
        self.error.show(exc)

    def _searching(self, busy: bool) -> None:
        self.search_button.disabled = busy
        self.stop_button.disabled = not busy

    def stop(self) -> None:
        """Stop the running search; what arrived so far stays in the table."""
        self._search.stop()
        self.count.value = f"stopped after {len(self._studies)} studies"

    # -- series choice ------------------------------------------------------------------
    def choose_series(self) -> None:
        """List the series of the ticked studies; ticked series replace whole studies."""
        self.error.clear()
        studies = [self._studies[uid] for uid in self.table.selected]
        if not studies:
            self.error.show("tick the studies whose series you want to choose")
            return
        self._clear_series()
        self.count.value = "loading series…"

        def work(stop: threading.Event) -> int:
            rows = []
            for study in studies:
                if stop.is_set():
                    break
                for series in study.series():
                    ref = {"PatientID": study.patient_id, "StudyInstanceUID": study.study_uid,
                           "SeriesInstanceUID": series.series_uid}  # fmt: skip
                    self._series[series.series_uid] = ref
                    rows.append({**series.row(), "PatientID": study.patient_id,
                                 "StudyDate": study.study_date})  # fmt: skip
            self.series_table.add(rows)
            self.series_table.layout.display = "flex"
            return len(rows)

        def done(n: int) -> None:
            self.count.value = f"{n} series of {len(studies)} studies: tick the ones to send"

        self._search.start(work, done, self._search_failed)

    def _clear_series(self) -> None:
        self._series = {}
        self.series_table.clear()
        self.series_table.layout.display = "none"

    # -- transferring -------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The transfer options as ``wb.transfer`` keywords."""
        options: dict[str, Any] = {
            "pseudonym": self.pseudonym.value.strip() or None,
            "trial_protocol_id": self.trial_protocol_id.value.strip(),
            "trial_protocol_name": self.trial_protocol_name.value.strip(),
            "project_name": self.project_name.value.strip(),
            "convert_to_nifti": self.nifti.value,
            **self.flags.options(),
        }
        if self.archive_password.value:
            options["archive_password"] = self.archive_password.value
        return options

    @property
    def job(self) -> Any:
        """The job this widget created last (None before)."""
        return self.runner.job

    def transfer(self) -> None:
        """Create the job for the ticked studies and follow it in the background."""
        self.error.clear()
        chosen: list[Any] = [self._series[uid] for uid in self.series_table.selected]
        if not chosen:
            chosen = [self._studies[uid] for uid in self.table.selected]
        if not chosen:
            self.error.show("tick at least one study to transfer")
            return
        if not self.destination.value:
            self.error.show("no destination node: you may not use any node as a destination")
            return
        source, destination, options = self.source.value, self.destination.value, self.options()
        self.runner.start(
            lambda: self.wb.transfer(chosen, to=destination, source=source, **options)
        )

    def close(self) -> None:
        """Stop background work and close the widget."""
        self._search.stop()
        self.runner.stop()
        super().close()
