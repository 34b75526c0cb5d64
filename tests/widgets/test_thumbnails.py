"""Explorer thumbnails: the picture is shrunk before windowing, and the widget keeps it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import adit_workbench as aw
from adit_workbench.dicom.images import shrink, thumbnail_of

from .conftest import eventually
from .site import Site


def _ct(rows: int, columns: int, pixels: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 1, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PixelData = pixels.astype(np.int16).tobytes()
    return ds


def test_shrink_averages_blocks() -> None:
    image = np.arange(16, dtype=np.int16).reshape(4, 4)
    assert np.array_equal(shrink(image, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert shrink(image, 4) is image  # small enough already
    # An odd edge is cropped to whole blocks; colour keeps its samples.
    assert shrink(np.zeros((5, 7), np.uint8), 3).shape == (1, 2)  # blocks of 3x3
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0] = 200
    assert np.array_equal(shrink(rgb, 3)[0, 0], [200, 0, 0])
    # A single-pixel line survives as a grey line; striding would drop it or keep it whole.
    lines = np.zeros((8, 8), np.int16)
    lines[:, 1] = 100
    assert np.allclose(shrink(lines, 4)[:, 0], 50)


def test_thumbnail_of_a_large_slice_is_windowed_after_shrinking() -> None:
    # Left half air (-1000 HU, black in a soft-tissue window), right half 1000 HU (white).
    pixels = np.zeros((512, 640), np.int16)
    pixels[:, 320:] = 2024
    picture = thumbnail_of(_ct(512, 640, pixels))
    assert (picture.width, picture.height) == (213, 170)  # 640/3 and 512/3, whole blocks
    image = np.asarray(Image.open(io.BytesIO(picture.png)))
    assert image.shape == (170, 213)
    assert image[:, :100].max() == 0 and image[:, 110:].min() == 255


def test_explorer_keeps_thumbnails_and_fetches_on_choosing(site: Site) -> None:
    widget = aw.widgets.Explorer(site.wb)
    try:
        eventually(lambda: widget.status.value == "3 patients", what="patients")
        widget.listing.value = 0
        widget.open_selected()
        eventually(lambda: widget.status.value == "2 studies", what="studies")
        widget.listing.value = 0
        widget.open_selected()
        eventually(lambda: widget.status.value == "2 series", what="series")
        calls: list[str] = []
        for series in widget._path[-1].children:
            original = series.thumbnail

            def counted(*args: object, _f: object = original, _s: object = series) -> object:
                calls.append(_s.series_uid)  # type: ignore[attr-defined]
                return _f(*args)  # type: ignore[operator]

            object.__setattr__(series, "thumbnail", counted)
        widget.listing.value = 0  # choosing a series starts its thumbnail
        first = widget.selected.series_uid
        eventually(lambda: calls == [first], what="the fetch on choosing")
        widget.show_thumbnail()
        eventually(lambda: widget.thumbnail.value or widget.error.value, what="thumbnail")
        assert widget.error.value == ""
        shown = bytes(widget.thumbnail.value)
        assert shown.startswith(b"\x89PNG")
        widget.listing.value = 1
        assert widget.thumbnail.layout.display == "none"
        widget.listing.value = 0
        widget.show_thumbnail()
        eventually(lambda: bytes(widget.thumbnail.value) == shown, what="the kept thumbnail")
        # The first series was fetched once: choosing it again reused its thumbnail (the
        # second series' fetch was dropped if it had not started when the choice moved on).
        assert calls.count(first) == 1 and len(calls) <= 2
    finally:
        widget.close()
