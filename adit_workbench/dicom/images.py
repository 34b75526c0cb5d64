"""Pixels in a notebook: volumes, windowed pictures and thumbnails from DICOM instances.

``series.volume()`` stacks single-frame images into a :class:`Volume`: a NumPy array in
modality units (Hounsfield units for CT) with its slice order, spacing and orientation
taken from ImagePositionPatient and ImageOrientationPatient, not from InstanceNumber,
which scanners do not always number along the patient. ``series.thumbnail()`` and
``study.preview()`` give :class:`Picture` objects that a notebook shows as PNG images:
the middle slice, windowed by the instance's WindowCenter/WindowWidth or, without them,
by the 1st and 99th percentile.

Pillow encodes the PNGs (it is small and pure-wheel; matplotlib would pull a GUI toolkit
into every worker). Pixel data in a compressed transfer syntax needs pydicom's decoder
plugins (pylibjpeg, gdcm); without them :class:`~adit_workbench.errors.InputError` says so.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom import Dataset

from ..errors import InputError
from .display import html_fields

__all__ = [
    "Picture",
    "Preview",
    "Volume",
    "modality_values",
    "picture",
    "shrink",
    "thumbnail_of",
    "to_uint8",
    "volume_from",
    "window_of",
]

#: Longest side of a thumbnail, in pixels.
THUMBNAIL_SIZE = 256


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        items = [float(v) for v in (value if isinstance(value, Sequence) else [value])]
    except (TypeError, ValueError):
        return None
    return tuple(items) if len(items) == count else None


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _pixels(ds: Dataset) -> np.ndarray:
    if "PixelData" not in ds:
        raise InputError(f"instance {_sop(ds)} has no pixel data")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises several types for missing decoders
        raise InputError(
            f"instance {_sop(ds)}: pixel data cannot be decoded "
            f"({type(exc).__name__}; compressed data needs pylibjpeg or gdcm)"
        ) from exc


def _sop(ds: Dataset) -> str:
    return str(ds.get("SOPInstanceUID", "") or "(no SOPInstanceUID)")


def modality_values(ds: Dataset) -> np.ndarray:
    """The pixels in modality units: stored values × RescaleSlope + RescaleIntercept."""
    values = _pixels(ds).astype(np.float32)
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    if slope != 1.0 or intercept != 0.0:
        values = values * np.float32(slope) + np.float32(intercept)
    return values


def window_of(ds: Dataset) -> tuple[float, float] | None:
    """The instance's first (WindowCenter, WindowWidth), or None when it has none."""
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return center, width


def to_uint8(
    values: np.ndarray, window: tuple[float, float] | None = None, *, invert: bool = False
) -> np.ndarray:
    """Map modality values to 0–255 through a window (center, width), or through the 1st
    and 99th percentile when none is given (robust against a few extreme pixels)."""
    data = np.asarray(values, dtype=np.float32)
    if window is not None:
        low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
    elif data.size:
        low, high = (float(p) for p in np.percentile(data, (1, 99)))
    else:
        low, high = 0.0, 1.0
    if high <= low:
        high = low + 1.0
    scaled = np.clip((data - low) / (high - low), 0.0, 1.0) * 255.0
    out = scaled.astype(np.uint8)
    return 255 - out if invert else out


@dataclass(frozen=True, repr=False)
class Picture:
    """A PNG image a notebook shows (``_repr_png_``); ``.png`` holds the bytes."""

    png: bytes
    width: int
    height: int
    caption: str = ""

    def __repr__(self) -> str:
        about = f" {self.caption}" if self.caption else ""
        return f"<Picture {self.width}x{self.height} PNG{about}>"

    def _repr_png_(self) -> bytes:
        return self.png

    def _repr_html_(self) -> str:
        return f"<figure style='display:inline-block;margin:2px'>{self._img()}</figure>"

    def _img(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        caption = html.escape(self.caption)
        img = f"<img src='data:image/png;base64,{data}' alt='{caption}'/>"
        return img + (
            f"<figcaption style='font-size:11px'>{caption}</figcaption>" if caption else ""
        )

    def save(self, path: str) -> None:
        """Write the PNG file."""
        with open(path, "wb") as fh:
            fh.write(self.png)


class Preview(list[Picture]):
    """Pictures shown side by side with their captions (e.g. one per series of a study).

    ``skipped`` lists what could not be shown and why (a report without pixels, pixel
    data without a decoder), so a preview never hides a series silently.
    """

    def __init__(
        self,
        pictures: Iterable[Picture] = (),
        title: str = "",
        skipped: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(pictures)
        self.title = title
        self.skipped = list(skipped)

    def __repr__(self) -> str:
        head = f"Preview {self.title}: " if self.title else "Preview: "
        lines = [f"  {p!r}" for p in self] + [f"  not shown: {c}: {why}" for c, why in self.skipped]
        head += f"{len(self)} picture(s)" + (
            f", {len(self.skipped)} not shown" if self.skipped else ""
        )
        return "\n".join([head, *lines[:38]])

    def _repr_html_(self) -> str:
        figures = "".join(
            f"<figure style='display:inline-block;margin:2px;vertical-align:top'>{p._img()}"
            "</figure>"
            for p in self
        )
        title = f"<p style='color:#666'>{html.escape(self.title)}</p>" if self.title else ""
        missing = "".join(
            f"<li>{html.escape(caption)}: {html.escape(why)}</li>" for caption, why in self.skipped
        )
        notes = f"<ul style='color:#666'>{missing}</ul>" if missing else ""
        return f"<div>{title}{figures}{notes}</div>"


def picture(image: np.ndarray, caption: str = "", *, size: int = THUMBNAIL_SIZE) -> Picture:
    """A PNG of a uint8 image (grey, or RGB as rows × columns × 3), longest side ≤ ``size``."""
    from PIL import Image

    frame = Image.fromarray(np.ascontiguousarray(image))
    frame.thumbnail((size, size))
    buffer = io.BytesIO()
    # zlib's fast level: a thumbnail is shown once, and optimize=True tried every level
    # (a third of a 512×512 image's thumbnail time, for 10 % fewer bytes).
    frame.save(buffer, format="PNG", compress_level=1)
    return Picture(buffer.getvalue(), frame.width, frame.height, caption)


def shrink(pixels: np.ndarray, size: int) -> np.ndarray:
    """``pixels`` (rows × columns [× samples]) reduced by a whole factor so that the longer
    side is at most about ``size``: each output pixel the mean of a block of the input.

    Done before windowing, so a 512×512 CT slice is windowed as 256×256 (a block mean,
    not striding: striding would keep the noise of single pixels and alias fine lines).
    """
    rows, columns = pixels.shape[:2]
    step = -(-max(rows, columns) // max(1, size))  # ceiling division
    if step <= 1:
        return pixels
    rows, columns = rows - rows % step, columns - columns % step
    if rows == 0 or columns == 0:  # thinner than one block: striding is all there is
        return pixels[::step, ::step]
    cropped = pixels[:rows, :columns]
    # step² strided adds: several times faster than a mean over a reshaped 4-D view.
    total = np.zeros((rows // step, columns // step, *pixels.shape[2:]), dtype=np.float32)
    for i in range(step):
        for j in range(step):
            total += cropped[i::step, j::step]
    total *= np.float32(1.0 / (step * step))
    return total


def thumbnail_of(ds: Dataset, caption: str = "", *, size: int = THUMBNAIL_SIZE) -> Picture:
    """The instance as a windowed picture (the middle frame of a multi-frame image, with
    the rescale and window of that frame's functional groups)."""
    pixels = _pixels(ds)
    frames = _frames(ds)
    frame = frames[len(frames) // 2]
    if frame.index is not None:
        pixels = pixels[frame.index]
    # Shrink first: rescale and window then touch a quarter of the pixels (or fewer).
    values = shrink(pixels, size).astype(np.float32, copy=False)
    values = values * np.float32(frame.slope) + np.float32(frame.intercept)
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3:  # colour: no window, the whole range
        low, high = float(values.min()), float(values.max())
        return picture(
            to_uint8(values, ((low + high) / 2, (high - low) or 1.0)), caption, size=size
        )
    invert = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    return picture(to_uint8(values, frame.window, invert=invert), caption, size=size)


@dataclass(frozen=True, repr=False)
class Volume:
    """Slices of one series stacked along the patient, in modality units.

    Attributes
    ----------
    array:
        ``float32`` of shape (slices, rows, columns); HU for CT.
    spacing:
        (between slices, between rows, between columns) in mm.
    origin:
        ImagePositionPatient of the first slice (mm, patient coordinates LPS).
    row_direction, column_direction, normal:
        Unit vectors in patient coordinates: along a row, down a column, and the
        direction the slices are sorted in (row × column).
    window:
        The first slice's (WindowCenter, WindowWidth), if it has one.
    uneven:
        True when the gaps between slices differ by more than 1 % (a missing slice, or
        a series of several stacks): ``spacing[0]`` is then their median.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    normal: tuple[float, float, float]
    modality: str = ""
    window: tuple[float, float] | None = None
    uneven: bool = False
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns)."""
        return tuple(self.array.shape)

    @property
    def affine(self) -> np.ndarray:
        """4×4 matrix from (slice, row, column) indices to patient coordinates (mm, LPS)."""
        matrix = np.eye(4)
        matrix[:3, 0] = np.asarray(self.normal) * self.spacing[0]
        matrix[:3, 1] = np.asarray(self.column_direction) * self.spacing[1]
        matrix[:3, 2] = np.asarray(self.row_direction) * self.spacing[2]
        matrix[:3, 3] = self.origin
        return matrix

    def thumbnail(self, index: int | None = None, *, size: int = THUMBNAIL_SIZE) -> Picture:
        """Slice ``index`` (default: the middle one) as a windowed picture."""
        chosen = len(self.array) // 2 if index is None else index
        image = to_uint8(self.array[chosen], self.window)
        return picture(image, f"slice {chosen + 1} of {len(self.array)}", size=size)

    def _fields(self) -> list[tuple[str, Any]]:
        def vec(v: Sequence[float]) -> str:
            return "(" + ", ".join(f"{x:.3g}" for x in v) + ")"

        low, high = (
            (float(self.array.min()), float(self.array.max())) if self.array.size else (0, 0)
        )
        return [
            ("shape", " × ".join(map(str, self.shape)) + " (slices, rows, columns)"),
            ("spacing mm", vec(self.spacing) + (" uneven gaps" if self.uneven else "")),
            ("origin mm", vec(self.origin)),
            ("row, column", f"{vec(self.row_direction)}, {vec(self.column_direction)}"),
            ("normal", vec(self.normal)),
            ("values", f"{low:g} … {high:g} {self.modality}".rstrip()),
            ("window", vec(self.window) if self.window else ""),
        ]

    def __repr__(self) -> str:
        lines = [f"  {k:<12}{v}" for k, v in self._fields() if v]
        return "\n".join(["Volume", *lines])

    def _repr_html_(self) -> str:
        return html_fields("Volume (.array; a slice as a picture: .thumbnail())", self._fields())


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


@dataclass
class _Frame:
    """One 2-D image: a single-frame instance, or one frame of a multi-frame one."""

    source: Dataset
    index: int | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    spacing: tuple[float, ...] | None
    slope: float
    intercept: float
    window: tuple[float, float] | None
    number: float


def _in_groups(groups: Sequence[Dataset | None], sequence: str, keyword: str) -> Any:
    """``keyword`` from the first functional group (per-frame, then shared) that has it."""
    for group in groups:
        if group is not None and sequence in group and len(group[sequence].value):
            item = group[sequence].value[0]
            if keyword in item:
                return item.get(keyword)
    return None


def _frames(ds: Dataset) -> list[_Frame]:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    top = (
        _floats(ds.get("ImagePositionPatient"), 3),
        _floats(ds.get("ImageOrientationPatient"), 6),
        _floats(ds.get("PixelSpacing"), 2),
    )
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    number = _first(ds.get("InstanceNumber")) or 0.0
    if count <= 1:
        return [_Frame(ds, None, *top, slope, intercept, window_of(ds), number)]
    shared = (
        ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    )
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    frames = []
    for index in range(count):
        groups = [per[index] if index < len(per) else None, shared]
        center = _first(_in_groups(groups, "FrameVOILUTSequence", "WindowCenter"))
        width = _first(_in_groups(groups, "FrameVOILUTSequence", "WindowWidth"))
        frames.append(
            _Frame(
                ds,
                index,
                _floats(_in_groups(groups, "PlanePositionSequence", "ImagePositionPatient"), 3),
                _floats(
                    _in_groups(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
                )
                or top[1],
                _floats(_in_groups(groups, "PixelMeasuresSequence", "PixelSpacing"), 2) or top[2],
                _first(_in_groups(groups, "PixelValueTransformationSequence", "RescaleSlope"))
                or slope,
                _first(_in_groups(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
                or intercept,
                (center, width) if center is not None and width else window_of(ds),
                float(index),
            )
        )
    return frames


def volume_from(datasets: Iterable[Dataset]) -> Volume:
    """Stack the images of one orientation and size into a :class:`Volume`.

    Takes single-frame instances and multi-frame ones (enhanced CT/MR: positions,
    orientation, spacing and rescale from the functional groups). Slices are sorted by
    their position along the normal of the image plane; without positions (no
    ImagePositionPatient) by InstanceNumber (or frame number), with SliceThickness (or
    1 mm) as spacing. Instances without pixels (e.g. structured reports) are left out.
    """
    frames = [f for ds in datasets if "PixelData" in ds for f in _frames(ds)]
    if not frames:
        raise InputError("no images to stack: the series has no instances with pixel data")
    first = frames[0]
    orientation = first.orientation or (1, 0, 0, 0, 1, 0)
    row, column = _unit(np.array(orientation[:3])), _unit(np.array(orientation[3:]))
    normal = _unit(np.cross(row, column))
    shape = (int(first.source.Rows), int(first.source.Columns))
    for frame in frames:
        ds = frame.source
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise InputError(f"instance {_sop(ds)} is {ds.Rows}×{ds.Columns}, not {shape[0]}×"
                             f"{shape[1]} like the others: not one stack")  # fmt: skip
        other = frame.orientation
        if other is not None and not np.allclose(other, orientation, atol=1e-3):
            raise InputError(f"instance {_sop(ds)} has another orientation: not one stack")
    if all(f.position is not None for f in frames):
        where = np.array([f.position for f in frames], dtype=float)
        order = np.argsort(where @ normal, kind="stable")
        where = where[order]
        gaps = np.diff(where @ normal)
        between = float(np.median(gaps)) if len(gaps) else _thickness(first.source)
        uneven = bool(len(gaps) and np.ptp(gaps) > 0.01 * max(abs(between), 1e-6))
    else:
        order = np.argsort([f.number for f in frames], kind="stable")
        where = np.zeros((len(frames), 3))
        between, uneven = _thickness(first.source), False
    ordered = [frames[i] for i in order]
    decoded: dict[int, np.ndarray] = {}  # a multi-frame instance is decoded once

    def values(frame: _Frame) -> np.ndarray:
        key = id(frame.source)
        if key not in decoded:
            decoded[key] = _pixels(frame.source)
        pixels = decoded[key] if frame.index is None else decoded[key][frame.index]
        return pixels.astype(np.float32) * np.float32(frame.slope) + np.float32(frame.intercept)

    array = np.stack([values(f) for f in ordered]).astype(np.float32, copy=False)
    pixel = first.spacing or (1.0, 1.0)
    return Volume(
        array=array,
        spacing=(abs(between) or _thickness(first.source), float(pixel[0]), float(pixel[1])),
        origin=tuple(float(x) for x in where[0]),  # type: ignore[arg-type]
        row_direction=tuple(float(x) for x in row),  # type: ignore[arg-type]
        column_direction=tuple(float(x) for x in column),  # type: ignore[arg-type]
        normal=tuple(float(x) for x in normal),  # type: ignore[arg-type]
        modality=str(first.source.get("Modality", "") or ""),
        window=ordered[0].window,
        uneven=uneven,
        positions=where,
    )


def _thickness(ds: Dataset) -> float:
    return _first(ds.get("SpacingBetweenSlices")) or _first(ds.get("SliceThickness")) or 1.0
