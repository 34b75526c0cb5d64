"""Data and pictures in one call: datasets, volumes, thumbnails and plots from query results.

Against the sandbox PACS started by the facade (C-GET) and a test Orthanc (C-GET and
WADO-RS), always through the node a user holds, so the access check and audit apply.
"""

from __future__ import annotations

import copy
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread

import adit_workbench as aw
from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.config import Settings, get_settings
from adit_workbench.deid import scan_leaks
from adit_workbench.dicom.images import (
    Picture,
    Preview,
    Volume,
    thumbnail_of,
    to_uint8,
    volume_from,
)
from adit_workbench.dicom.results import Study
from adit_workbench.dicom.spec import Capabilities
from adit_workbench.errors import InputError, NodeAccessDenied, PermissionDenied
from adit_workbench.jobs.execute import build_pseudonymizer
from adit_workbench.sandbox.synthetic import generate, iter_datasets
from adit_workbench.workbench import Workbench
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer

from .conftest import ARCHIVE


def _png(picture: Picture) -> Image.Image:
    image = Image.open(io.BytesIO(picture.png))
    assert image.format == "PNG" and image.size == (picture.width, picture.height)
    return image


# -- pixels without a node -------------------------------------------------------------
def _slices(count: int = 6, size: int = 16) -> list[Dataset]:
    return list(iter_datasets(patients=1, series=1, instances=count, rows=size, cols=size))


def test_volume_sorts_along_the_normal_not_by_instance_number() -> None:
    slices = _slices()
    random.Random(3).shuffle(slices)
    for ds in slices:  # scanners do not always number along the patient
        ds.InstanceNumber = 7 - int(ds.InstanceNumber)
    volume = volume_from(slices)
    assert volume.shape == (6, 16, 16) and volume.array.dtype == np.float32
    z = volume.positions[:, 2]
    assert list(z) == sorted(z)  # along +z, the normal of an axial slice
    assert volume.spacing == (
        5.0,
        float(slices[0].PixelSpacing[0]),
        float(slices[0].PixelSpacing[1]),
    )
    assert volume.normal == (0.0, 0.0, 1.0) and not volume.uneven
    first = min(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))
    hu = first.pixel_array.astype(np.float32) - 1024  # CT: RescaleIntercept -1024
    assert np.array_equal(volume.array[0], hu)
    assert volume.window == (40.0, 400.0)
    assert np.allclose(volume.affine @ [1, 0, 0, 1], [*volume.positions[1], 1])
    assert "6 × 16 × 16" in repr(volume)


def test_volume_flags_a_gap_and_refuses_mixed_stacks() -> None:
    slices = _slices()
    del slices[2]
    assert volume_from(slices).uneven
    other = _slices(2, size=8)
    with pytest.raises(InputError, match="not one stack"):
        volume_from(slices + other)
    with pytest.raises(InputError, match="no instances with pixel data"):
        volume_from([])


def test_windowing_uses_the_window_or_percentiles() -> None:
    values = np.array([[-1000.0, 40.0, 240.0, 3000.0]])
    assert list(to_uint8(values, (40, 400))[0]) == [0, 127, 255, 255]
    spread = np.linspace(0, 1000, 1000).reshape(10, 100)
    scaled = to_uint8(spread)
    assert scaled.min() == 0 and scaled.max() == 255
    assert list(to_uint8(values, (40, 400), invert=True)[0]) == [255, 128, 0, 0]


# -- the sandbox PACS, through the facade ------------------------------------------------
@pytest.fixture
def wb(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workbench]:
    monkeypatch.setenv("ADIT_WB_SANDBOX_PORT", str(free_port()))
    monkeypatch.setenv("ADIT_WB_SANDBOX_PATIENTS", "2")
    get_settings.cache_clear()
    workbench = aw.connect()
    workbench.start_sandbox()
    yield workbench
    workbench.close()  # first: the sandbox would wait for our pooled associations
    workbench.stop_sandbox()


def test_datasets_volume_and_pictures_from_the_sandbox(wb: Workbench) -> None:
    pacs = wb.node("SANDBOX")
    [study, *_] = pacs.find_studies(patient_id="SYN0001", modality="CT")
    series = study.series()[0]
    originals = list(series.datasets())
    assert len(originals) == series.instance_count
    assert {str(ds.SeriesInstanceUID) for ds in originals} == {series.series_uid}
    [instance] = [i for i in series.instances() if i.instance_number == 1]
    one = instance.dataset()
    assert str(one.SOPInstanceUID) == instance.sop_instance_uid

    volume = series.volume()
    assert isinstance(volume, Volume) and volume.shape[0] == series.instance_count
    assert volume.modality == "CT" and volume.array.min() < 0  # HU, not stored values
    thumb = series.thumbnail(size=64)
    assert max(_png(thumb).size) <= 64 and "CT" in thumb.caption
    assert thumb._repr_png_() == thumb.png
    preview = study.preview(size=48)
    assert isinstance(preview, Preview) and len(preview) == len(study.series())
    assert preview._repr_html_().count("<img ") == len(preview)

    retrieves = [e for e in wb.access.admin.audit_events(action="retrieve")]
    assert retrieves and all(e.node == "SANDBOX" and e.outcome == "ok" for e in retrieves)


def test_pseudonymized_datasets_match_a_transfer_job(wb: Workbench, tmp_path: Path) -> None:
    pacs = wb.node("SANDBOX")
    series = pacs.find_studies(patient_id="SYN0002")[0].series()[0]
    originals = list(series.datasets())
    mine = list(series.datasets(pseudonym="SUBJ-07", project="LUNG"))
    assert {str(ds.PatientID) for ds in mine} == {"SUBJ-07"}
    job = {"project_name": "LUNG", "pseudonymize": True}
    as_job = build_pseudonymizer(wb.settings, job, "SUBJ-07")
    assert as_job is not None
    expected = as_job(copy.deepcopy(originals[0]))
    got = next(ds for ds in mine if ds.SOPInstanceUID == expected.SOPInstanceUID)
    assert got.StudyDate == expected.StudyDate and got.StudyInstanceUID == expected.StudyInstanceUID
    assert scan_leaks(originals, []).clean  # sanity: nothing scanned, nothing found
    # a leak scan of the pseudonymized datasets against the originals, without a folder
    out = tmp_path / "leakscan"
    out.mkdir()
    for index, ds in enumerate(mine):
        ds.save_as(out / f"{index}.dcm", enforce_file_format=True)
    report = scan_leaks(originals, sorted(out.glob("*.dcm")))
    assert report.clean, str(report)
    other = wb.pseudonymizer(project="OTHER", pseudonym="SUBJ-07")
    assert other(copy.deepcopy(originals[0])).StudyInstanceUID != got.StudyInstanceUID


def test_plot_shows_studies_over_time_by_modality(wb: Workbench) -> None:
    import matplotlib

    matplotlib.use("Agg")
    hits = wb.node("SANDBOX").find_studies()
    ax = hits.plot()
    heights = sum(bar.get_height() for bar in ax.patches)
    modalities = sum(len(s.modalities) for s in hits if s.study_date is not None)
    assert heights == modalities and {t.get_text() for t in ax.get_legend().get_texts()} == {
        "CT",
        "MR",
    }
    assert ax.get_xlabel() in ("month", "year")
    with pytest.raises(InputError, match="studies over time"):
        hits[0].series().plot()


def test_data_calls_are_checked_and_the_key_needs_a_source_role(wb: Workbench) -> None:
    wb.access.admin.grant("readers", "SANDBOX", source=True)
    bob = Workbench(wb.settings, wb.database, sign_in(
        wb.database, Identity("bob", IdentitySource.JUPYTERHUB, groups=("readers",)), embedded=False
    ))  # fmt: skip
    series = bob.node("SANDBOX").find_studies(patient_id="SYN0001")[0].series()[0]
    assert next(series.datasets()).SeriesInstanceUID == series.series_uid
    assert bob.pseudonymizer(project="LUNG").pseudonym("X") == wb.pseudonymizer(
        project="LUNG"
    ).pseudonym("X")
    wb.access.admin.revoke("readers", "SANDBOX")
    with pytest.raises(NodeAccessDenied):
        series.datasets()  # refused at the call, before anything is iterated
    with pytest.raises(NodeAccessDenied):
        series.thumbnail()
    with pytest.raises(PermissionDenied, match="source role"):
        bob.pseudonymizer(project="LUNG")
    outcomes = [(e.action, e.outcome) for e in wb.access.admin.audit_events(user="bob")]
    assert ("retrieve", "ok") in outcomes and ("deid.pseudonymizer", "denied") in outcomes


# -- a real PACS: Orthanc over C-GET and WADO-RS -------------------------------------------
@pytest.mark.orthanc
@pytest.mark.parametrize("via", ["dimse", "dicomweb"])
def test_series_data_from_orthanc(
    via: str, loaded_orthanc: OrthancServer, node_settings: Settings
) -> None:
    wb = aw.connect()
    try:
        wb.add_server(
            "ORTHANC",
            ae_title=loaded_orthanc.ae_title,
            host=loaded_orthanc.host,
            port=loaded_orthanc.dicom_port,
            dicomweb_url=loaded_orthanc.dicomweb_url,
            capabilities=Capabilities(study_root_get=True, qido=True, wado=True),
        )
        node = wb.node("ORTHANC")
        study = node.find_studies(patient_id="NODE0001", via=via)[0]
        series = study.series()[0]
        assert series.via == via
        datasets = list(series.datasets(pseudonym="SUBJ-01"))
        assert len(datasets) == ARCHIVE["instances"]
        assert {str(ds.PatientID) for ds in datasets} == {"SUBJ-01"}
        assert series.volume().shape[0] == ARCHIVE["instances"]
        assert _png(series.thumbnail(size=32)).size[0] <= 32
    finally:
        wb.close()


def test_a_notebook_shows_pictures_and_plots(tmp_path: Path) -> None:
    """In a real kernel: a thumbnail is an image/png output, a preview HTML with images,
    Results.plot() a figure, an Explanation a short table."""
    import os

    from jupyter_client.manager import start_new_kernel

    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "ADIT_WB_DATA_DIR": str(tmp_path / "data"),
           "ADIT_WB_SANDBOX_PORT": str(free_port()), "ADIT_WB_SANDBOX_PATIENTS": "1",
           "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for var in ("ADIT_WB_DATABASE_URL", "ADIT_WB_REDIS_URL", "ADIT_WB_SECRET_FILE", "MPLBACKEND"):
        env.pop(var, None)
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))

    def run(code: str) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []
        reply = client.execute_interactive(code, timeout=120, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        kinds = ("execute_result", "display_data")
        return [m["content"]["data"] for m in outputs if m["msg_type"] in kinds]

    try:
        run("import adit_workbench as aw\nwb = aw.connect()\nwb.start_sandbox()\n"
            "hits = wb.node('SANDBOX').find_studies()\nseries = hits[0].series()[0]")  # fmt: skip
        [thumb] = run("series.thumbnail()")
        assert thumb["image/png"] and thumb["text/plain"].startswith("<Picture")
        [preview] = run("hits[0].preview()")
        assert preview["text/html"].count("<img ") >= 2  # one per series
        figures = run("hits.plot();")
        assert any("image/png" in data for data in figures)
        [explained] = run("wb.pseudonymizer(project='P').explain(next(series.datasets()))")
        assert explained["text/plain"].startswith("Explanation: ")
        assert (
            len(explained["text/plain"].splitlines()) <= 40 and "<table" in explained["text/html"]
        )
    finally:
        try:
            run("wb.close(); wb.stop_sandbox()")
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def _enhanced(slices: list[Dataset]) -> Dataset:
    """One multi-frame instance holding ``slices`` as frames, geometry in functional groups
    (as enhanced CT/MR carries it), frames stored in reverse order of position."""
    frames = sorted(slices, key=lambda ds: -float(ds.ImagePositionPatient[2]))
    ds = copy.deepcopy(frames[0])
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                    "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):  # fmt: skip
        delattr(ds, keyword)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = b"".join(f.PixelData for f in frames)
    shared = Dataset()
    for sequence, keyword, value in (
        ("PlaneOrientationSequence", "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]),
        ("PixelMeasuresSequence", "PixelSpacing", list(frames[0].PixelSpacing)),
        ("PixelValueTransformationSequence", "RescaleIntercept", -1024),
    ):
        item = Dataset()
        setattr(item, keyword, value)
        if keyword == "RescaleIntercept":
            item.RescaleSlope = 1
        setattr(shared, sequence, [item])
    ds.SharedFunctionalGroupsSequence = [shared]
    per = []
    for frame in frames:
        group, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = list(frame.ImagePositionPatient)
        group.PlanePositionSequence = [plane]
        per.append(group)
    ds.PerFrameFunctionalGroupsSequence = per
    return ds


def test_a_multi_frame_instance_gives_the_same_volume() -> None:
    slices = _slices(5)
    single = volume_from(slices)
    multi = volume_from([_enhanced(slices)])
    assert multi.shape == single.shape and np.array_equal(multi.array, single.array)
    assert multi.spacing == single.spacing and np.allclose(multi.positions, single.positions)
    assert multi.array.min() < 0  # the rescale came from the functional groups
    middle = thumbnail_of(_enhanced(slices))
    # no window in the groups: percentiles, of the middle frame in HU
    assert np.array_equal(np.asarray(_png(middle)), to_uint8(single.array[2]))


def test_preview_lists_a_series_without_pictures(data_dir: Path, tmp_path: Path) -> None:
    paths = generate(tmp_path / "in", patients=1, series=2, instances=3, rows=8, cols=8)
    report = dcmread(paths[0])
    del report.PixelData
    report.Modality, report.SeriesDescription, report.SeriesNumber = "SR", "REPORT", 9
    report.SeriesInstanceUID = report.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    report.save_as(tmp_path / "in" / "report.dcm", enforce_file_format=True)
    with aw.connect() as wb:
        wb.add_folder("IN", tmp_path / "in")
        [study] = wb.node("IN").find_studies()
        preview = study.preview(size=32)
    assert len(preview) == 2 and [s[0].split()[0] for s in preview.skipped] == ["#9"]
    assert "no pixel data" in preview.skipped[0][1] and "1 not shown" in repr(preview)


def test_a_node_that_cannot_stream_says_so() -> None:
    class Remote:
        name = "REMOTE"

    study = Study.from_dataset(_slices(1)[0], Remote())  # type: ignore[arg-type]
    with pytest.raises(InputError, match="REMOTE cannot stream instances"):
        study.datasets()
