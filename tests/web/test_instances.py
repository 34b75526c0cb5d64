"""Data into the notebook on both workbenches: ``series.datasets()``, ``volume()``,
``thumbnail()``, ``study.preview()`` and ``instance.dataset()``, local and through the
service's ``/api/nodes/{node}/studies/…`` routes, with the same answers."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from adit_workbench.access import Permission
from adit_workbench.dicom.images import Picture, Preview, Volume
from adit_workbench.errors import NodeAccessDenied, PermissionDenied
from adit_workbench.jobs.execute import build_pseudonymizer
from adit_workbench.remote import KeyHeldByService, RemoteWorkbench
from tests.web.conftest import People, Running

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _series(wb: Any, patient: str = "SYN0001") -> Any:
    [study] = wb.node("SANDBOX").find_studies(patient_id=patient, modality="CT")
    return study, study.series()[0]


def test_datasets_volume_thumbnail_and_preview(wb_for: Callable[[str], Any]) -> None:
    wb = wb_for("alice")
    study, series = _series(wb)
    warnings.simplefilter("ignore")  # remote: pixels of pseudonymized instances (see below)
    datasets = list(series.datasets(pseudonym="SUBJ-1"))
    assert len(datasets) == series.instance_count == 3
    assert {str(ds.PatientID) for ds in datasets} == {"SUBJ-1"}
    assert all("PixelData" in ds for ds in datasets)
    volume = series.volume()
    assert isinstance(volume, Volume) and volume.shape[0] == 3 and volume.modality == "CT"
    thumb = series.thumbnail(size=48)
    assert isinstance(thumb, Picture) and max(thumb.width, thumb.height) <= 48
    assert thumb.png.startswith(b"\x89PNG") and "CT" in thumb.caption
    preview = study.preview(size=32)
    assert isinstance(preview, Preview) and len(preview) == len(study.series()) == 2
    instance = series.instances()[0]
    one = instance.dataset(pseudonym="SUBJ-1")
    assert str(one.PatientID) == "SUBJ-1"


def test_pseudonymized_the_same_way_on_both_backends(
    wb_for: Callable[[str], Any], people: People, service_settings: Any
) -> None:
    group = _group_of(people, "alice")
    people.admin.admin.add_permission(group, Permission.TRANSFER_UNPSEUDONYMIZED)
    wb = wb_for("alice")
    _, series = _series(wb, "SYN0002")
    originals = list(series.datasets())
    assert {str(ds.PatientID) for ds in originals} == {"SYN0002"}
    mine = list(series.datasets(pseudonym="SUBJ-07", project="LUNG"))
    job = build_pseudonymizer(service_settings, {"project_name": "LUNG"}, "SUBJ-07")
    assert job is not None
    expected = job(copy.deepcopy(originals[0]))
    got = next(ds for ds in mine if ds.SOPInstanceUID == expected.SOPInstanceUID)
    assert str(got.PatientID) == "SUBJ-07"
    assert got.StudyInstanceUID == expected.StudyInstanceUID and got.StudyDate == expected.StudyDate


def _group_of(people: People, user: str) -> str:
    [group] = [g for g in people.access[user].profile().groups if g.endswith(f"-{user}")]
    return group


def test_originals_only_with_the_permission(wb_for: Callable[[str], Any]) -> None:
    wb = wb_for("alice")  # source role on SANDBOX, no transfer_unpseudonymized
    _, series = _series(wb)
    if isinstance(wb, RemoteWorkbench):
        with pytest.warns(UserWarning, match="pseudonymized"):
            datasets = list(series.datasets())
        assert all(str(ds.PatientID) != "SYN0001" for ds in datasets)
        assert series.thumbnail(size=32).png  # pixels still reach the notebook
    else:  # the embedded workbench's user holds the database: nothing to withhold
        assert {str(ds.PatientID) for ds in series.datasets()} == {"SYN0001"}


def test_no_source_role_refused_at_the_call(wb_for: Callable[[str], Any], people: People) -> None:
    wb = wb_for("nina")
    _, series = _series(wb)
    people.admin.admin.revoke(_group_of(people, "nina"), "SANDBOX")
    with pytest.raises(NodeAccessDenied):
        series.datasets()  # refused before anything is iterated
    with pytest.raises(NodeAccessDenied):
        series.thumbnail()


def test_pseudonymizer_needs_the_secret(wb_for: Callable[[str], Any]) -> None:
    wb = wb_for("alice")
    if isinstance(wb, RemoteWorkbench):
        with pytest.raises(KeyHeldByService, match=r"series\.datasets") as caught:
            wb.pseudonymizer(project="LUNG")
        assert isinstance(caught.value, PermissionDenied)
    else:
        assert wb.pseudonymizer(project="LUNG").pseudonym("X")


def test_service_route_refuses_an_unknown_study_and_bad_input(
    service: Running, people: People
) -> None:
    s = service.session(people.token("alice"))
    base = service.url + "api/nodes/SANDBOX/studies"
    assert s.get(f"{base}/1.2.3.999").status_code == 404
    bad = s.get(f"{base}/not-a-uid")
    assert bad.status_code == 400 and "study" in bad.json()["message"]
    assert s.get(f"{base}/1.2.3?colour=red").status_code == 400
    assert service.session(people.token("olga")).get(f"{base}/1.2.3").status_code == 404
