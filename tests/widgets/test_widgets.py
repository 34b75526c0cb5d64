"""The widgets driven from Python (no browser): real sandbox PACS, real jobs, real files."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

import adit_workbench as aw
from adit_workbench.widgets._common import one_line

from .conftest import eventually
from .site import RESEARCHER, Site

NOW = datetime.now(UTC)


def test_widgets_are_lazy_and_exported() -> None:
    code = "import sys, adit_workbench; print('ipywidgets' in sys.modules)"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert plain.stdout.strip() == "False", plain.stderr
    assert {"SelectiveTransfer", "Explorer", "Jobs", "BatchQuery"} <= set(dir(aw.widgets))


def test_one_line_has_no_traceback() -> None:
    assert one_line(aw.InputError("bad date\nmore detail")) == "bad date"
    assert one_line(KeyError("x")) == "KeyError: 'x'"


def test_selective_transfer_search_select_transfer(site: Site) -> None:
    widget = aw.widgets.SelectiveTransfer(site.wb)
    assert widget.source.value == "SANDBOX"
    assert "OUT" in widget.destination.options
    widget.destination.value = "OUT"
    widget.fields["patient_id"].value = "SYN0001"
    widget.fields["modality"].value = "CT"
    widget.search()
    eventually(lambda: "found" in widget.count.value, what="search finished")
    assert [r["PatientID"] for r in widget.table.rows] == ["SYN0001"]
    assert widget.table.rows[0]["ModalitiesInStudy"] == "CT"
    for check in widget.table._checks.values():
        check.value = True
    widget.pseudonym.value = "WIDGET01"
    widget.trial_protocol_id.value = "TRIAL-W"
    widget.transfer()
    eventually(lambda: "SUCCESS" in widget.job_line.value, what="job SUCCESS")
    assert widget.progress.value == widget.progress.max
    delivered = list(site.out.rglob("*.dcm")) or [p for p in site.out.rglob("*") if p.is_file()]
    assert len(delivered) == 6
    assert any("WIDGET01" in str(p) for p in delivered)


def test_selective_transfer_error_is_one_line(site: Site) -> None:
    widget = aw.widgets.SelectiveTransfer(site.wb)
    widget.fields["patient_birth_date"].value = "not a date"
    widget.search()
    eventually(lambda: widget.error.value, what="error shown")
    assert "Traceback" not in widget.error.value
    assert "\n" not in widget.error.value
    assert widget.table.rows == []
    widget.transfer()  # nothing ticked
    assert "tick at least one" in widget.error.value


def test_search_can_be_stopped(site: Site) -> None:
    widget = aw.widgets.SelectiveTransfer(site.wb)
    widget.search()
    widget.stop()
    assert not widget.search_button.disabled
    assert widget.count.value.startswith("stopped")


def test_explorer_drills_down_and_back(site: Site) -> None:
    widget = aw.widgets.Explorer(site.wb)
    eventually(lambda: widget.status.value == "3 patients", what="patients")
    assert len(widget.listing.options) == 3
    widget.listing.value = 0
    assert "PatientID" in widget.metadata.value
    widget.open_selected()
    eventually(lambda: widget.status.value == "2 studies", what="studies")
    assert len(widget.listing.options) == 2
    widget.listing.value = 0
    widget.open_selected()
    eventually(lambda: widget.status.value == "2 series", what="series")
    assert len(widget.listing.options) == 2
    assert len(widget.crumbs.children) == 3
    widget.listing.value = 0
    assert "SeriesInstanceUID" in widget.metadata.value
    assert callable(getattr(widget.selected, "thumbnail", None))  # the sandbox offers them
    assert widget.thumbnail_button.layout.display != "none"
    widget.show_thumbnail()
    eventually(lambda: widget.thumbnail.value or widget.error.value, what="thumbnail")
    assert widget.error.value == ""
    assert bytes(widget.thumbnail.value).startswith(b"\x89PNG")
    assert widget.thumbnail.layout.display != "none"
    widget.back_to(0)
    assert widget.level == "patients"
    assert len(widget.crumbs.children) == 1


def test_batch_query_bad_file_shows_every_row(site: Site) -> None:
    widget = aw.widgets.BatchQuery(site.wb)
    data = b"PatientID,From,Modality\nSYN0001,notadate,CT\nSYN0002,2021-01-31,C T X\n"
    widget.upload.value = ({"name": "bad.csv", "content": memoryview(data), "size": len(data),
                            "type": "text/csv", "last_modified": NOW},)  # fmt: skip
    widget.start()
    eventually(lambda: widget.row_errors.value, what="row errors")
    assert "nothing was queued" in widget.error.value
    assert widget.row_errors.value.count("<tr>") >= 3  # header + at least two bad rows
    assert "<td>2</td>" in widget.row_errors.value and "<td>3</td>" in widget.row_errors.value
    assert "SYN0001" not in widget.row_errors.value  # no cell values (PHI) in errors


def test_batch_query_results_and_download(site: Site) -> None:
    widget = aw.widgets.BatchQuery(site.wb)
    data = b"PatientID,Modality\nSYN0002,MR\n"
    widget.upload.value = ({"name": "q.csv", "content": memoryview(data), "size": len(data),
                            "type": "text/csv", "last_modified": NOW},)  # fmt: skip
    widget.start()
    eventually(lambda: "aw-download" in widget.results.value, what="results")
    assert "SYN0002" in widget.results.value


def test_jobs_lists_and_acts(site: Site) -> None:
    hits = site.wb.node("SANDBOX").find_studies(patient_id="SYN0003")
    job = site.wb.transfer(hits[:1], to="OUT", pseudonym="JOBS01").wait(progress=False)
    widget = aw.widgets.Jobs(site.wb, live=False)
    assert widget.loaded.wait(60)  # the first read runs after the widget is shown
    assert job.id in [value for _, value in widget.choice.options]
    widget.choice.value = job.id
    eventually(lambda: "SUCCESS" in widget.job_line.value, what="job shown")
    assert "delivered" in widget.tasks.value
    assert "restart" in widget.actions  # the admin is staff
    widget.act("delete")
    assert job.id not in [value for _, value in widget.choice.options]
    assert "delete done" in widget.error.value


def test_controls_follow_permissions(site: Site) -> None:
    admin_view = aw.widgets.SelectiveTransfer(site.wb)
    assert admin_view.urgent is not None and admin_view.unpseudonymized is not None
    bob = site.as_user(RESEARCHER)
    view = aw.widgets.SelectiveTransfer(bob)
    assert view.urgent is None and view.unpseudonymized is None
    assert list(view.source.options) == ["SANDBOX"]
    assert list(view.destination.options) == ["OUT"]
    assert "restart" not in aw.widgets.Jobs(bob, live=False).actions
    assert aw.widgets.BatchQuery(bob).destination is None  # no batch_transfer permission
    with pytest.raises(aw.PermissionDenied):
        bob.transfer([], to="OUT", source="SANDBOX", urgent=True)


def test_selective_transfer_of_chosen_series(site: Site) -> None:
    widget = aw.widgets.SelectiveTransfer(site.wb)
    widget.destination.value = "OUT"
    widget.fields["patient_id"].value = "SYN0002"
    widget.fields["modality"].value = "MR"
    widget.search()
    eventually(lambda: "found" in widget.count.value, what="search finished")
    assert widget.table.rows[0]["StudyDescription"].startswith("MR")
    widget.table._all.value = True
    widget.choose_series()
    eventually(lambda: "tick the ones" in widget.count.value, what="series listed")
    assert len(widget.series_table.rows) == 2
    first = widget.series_table.rows[0]["SeriesInstanceUID"]
    widget.series_table._checks[first].value = True
    widget.pseudonym.value = "SERIES01"
    widget.transfer()
    eventually(lambda: "SUCCESS" in widget.job_line.value, what="job SUCCESS")
    delivered = [p for p in site.out.rglob("*") if p.is_file() and "SERIES01" in str(p)]
    assert len(delivered) == 3  # one series of the study, not both


def test_mass_transfer_checks_filters_and_previews(site: Site) -> None:
    widget = aw.widgets.MassTransfer(site.wb)
    widget.filters.value = '[{"mode": "sometimes"}]'
    assert "mode is include or exclude" in widget.filter_check.value
    widget.filters.value = '[{"mode": "include", "modality": "CT"}]'
    assert "1 filter(s)" in widget.filter_check.value
    study = site.wb.node("SANDBOX").find_studies(patient_id="SYN0001", modality="CT")[0]
    assert study.study_date is not None
    widget.start.value = widget.end.value = study.study_date.isoformat()
    widget.run_preview()
    eventually(lambda: "match" in widget.preview.value, what="preview")
    assert ": 1 studies, 2 series" in widget.preview.value
    widget.destination.value = "OUT"
    widget.trial_protocol_id.value = "MASS"
    widget.start_job()
    eventually(lambda: "SUCCESS" in widget.job_line.value, timeout=120, what="mass SUCCESS")


def test_admin_grant_changes_what_another_user_sees(site: Site) -> None:
    bob = site.as_user(RESEARCHER)
    assert aw.widgets.SelectiveTransfer(bob).urgent is None
    admin = aw.widgets.Admin(site.wb)
    admin.group.value = "researchers"
    admin.show_group()
    assert admin.permissions["explorer"].value and not admin.permissions["urgent"].value
    assert admin.node_roles[("SANDBOX", "source")].value
    assert RESEARCHER in admin.members.value
    admin.permissions["urgent"].value = True
    assert aw.widgets.SelectiveTransfer(bob).urgent is not None
    assert "access.perm.add" in admin.audit.value
    admin.permissions["urgent"].value = False
    assert aw.widgets.SelectiveTransfer(bob).urgent is None
    # bob gets a note, not the controls; the admin API refuses him anyway
    assert not hasattr(aw.widgets.Admin(bob), "admin")
    with pytest.raises(aw.PermissionDenied):
        bob.access.admin.add_permission("researchers", "urgent")


def test_announcement_shows_in_every_dashboard(site: Site) -> None:
    site.wb.access.admin.set_announcement("PACS upgrade on Friday")
    try:
        bob = site.as_user(RESEARCHER)
        for make in (aw.widgets.SelectiveTransfer, aw.widgets.Explorer, aw.widgets.BatchQuery,
                     aw.widgets.MassTransfer):  # fmt: skip
            banner = make(bob).children[1]
            assert "PACS upgrade on Friday" in banner.value, make.__name__
        assert "PACS upgrade" in aw.widgets.Jobs(bob, live=False).children[1].value
    finally:
        site.wb.access.admin.set_announcement("")
    assert aw.widgets.SelectiveTransfer(site.wb).children[1].value == ""


def test_jobs_offers_the_results_of_a_batch_query(site: Site) -> None:
    job = site.wb.batch_query(b"PatientID,Modality\nSYN0003,CT\n", source="SANDBOX", name="q.csv")
    job.wait(progress=False)
    widget = aw.widgets.Jobs(site.wb, live=False)
    assert widget.loaded.wait(60)  # the first read runs after the widget is shown
    widget.choice.value = job.id
    eventually(lambda: "aw-download" in widget.export.value, what="export link")
    assert f"job_{job.id}.csv" in widget.export.value


def test_results_table_sorts_and_keeps_ticks() -> None:
    from adit_workbench.widgets._common import SelectableTable

    table = SelectableTable(("PatientID", "StudyDate"), key="uid")
    table.add([{"uid": "a", "PatientID": "P2", "StudyDate": "2021-01-01"},
               {"uid": "b", "PatientID": "P1", "StudyDate": ""},
               {"uid": "c", "PatientID": "P3", "StudyDate": "2020-01-01"}])  # fmt: skip
    table._checks["c"].value = True
    table.sort_by("PatientID")
    assert [r["uid"] for r in table.rows] == ["b", "a", "c"]
    table.sort_by("PatientID")
    assert [r["uid"] for r in table.rows] == ["c", "a", "b"]
    table.sort_by("StudyDate")  # empty cells last
    assert [r["uid"] for r in table.rows] == ["c", "a", "b"]
    assert table.selected == ["c"]
    assert [line for line in table._body.children] == [table._lines[k] for k in "cab"]


def test_batch_transfer_refuses_bad_rows_then_transfers(site: Site) -> None:
    widget = aw.widgets.BatchTransfer(site.wb)
    widget.destination.value = "OUT"
    bad = b"PatientID,StudyInstanceUID,Pseudonym\nSYN0001,not a uid,P1\n,1.2.3,P2\n"
    widget.upload.value = ({"name": "bad.csv", "content": memoryview(bad), "size": len(bad),
                            "type": "text/csv", "last_modified": NOW},)  # fmt: skip
    widget.start()
    eventually(lambda: widget.row_errors.value, what="row errors")
    assert "<td>2</td>" in widget.row_errors.value and "<td>3</td>" in widget.row_errors.value
    study = site.wb.node("SANDBOX").find_studies(patient_id="SYN0003", modality="CT")[0]
    good = f"PatientID,StudyInstanceUID,Pseudonym\nSYN0003,{study.study_uid},BT01\n".encode()
    widget.upload.value = ({"name": "good.csv", "content": memoryview(good), "size": len(good),
                            "type": "text/csv", "last_modified": NOW},)  # fmt: skip
    widget.start()
    eventually(lambda: "SUCCESS" in widget.job_line.value, what="batch transfer SUCCESS")
    assert widget.row_errors.value == ""
    assert len([p for p in site.out.rglob("*") if p.is_file() and "BT01" in str(p)]) == 6


def test_thumbnail_png_from_bytes_or_image() -> None:
    from PIL import Image

    from adit_workbench.widgets.explorer import _png

    png = _png(Image.new("L", (4, 4), 128))
    assert png.startswith(b"\x89PNG") and _png(png) == png
