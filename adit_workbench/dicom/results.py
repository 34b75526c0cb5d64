"""Query results as typed objects that navigate, and collections that render as tables.

:class:`Patient`, :class:`Study`, :class:`Series` and :class:`Instance` are frozen
dataclasses holding the main attributes, the raw identifier the node answered with
(``.identifier``) and the node they came from, so that ``study.series()`` asks the same
node, by the same route preference, for the next level down.

A :class:`Results` collection is a read-only list with ``.df`` (a pandas DataFrame),
``_repr_html_`` for notebooks and ``.truncated``: true when the node had more answers than
the limit allowed. A truncated result always says so, in its repr, its HTML and its
DataFrame's ``attrs["truncated"]``.

DataFrame columns (stable; DICOM keywords so that a result can feed a batch file):

=========  ===================================================================================
patient    PatientID, PatientName, PatientBirthDate, PatientSex, NumberOfPatientRelatedStudies
study      PatientID, PatientName, PatientBirthDate, PatientSex, StudyDate, StudyTime,
           AccessionNumber, StudyDescription, ModalitiesInStudy, NumberOfStudyRelatedSeries,
           NumberOfStudyRelatedInstances, StudyInstanceUID
series     StudyInstanceUID, SeriesInstanceUID, Modality, SeriesNumber, SeriesDescription,
           NumberOfSeriesRelatedInstances
instance   StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID, InstanceNumber
=========  ===================================================================================

Dates are ``datetime64`` (``NaT`` when absent), counts and numbers nullable ``Int64``,
``ModalitiesInStudy`` a comma-separated string, everything else text ("" when absent).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, overload

from pydicom import Dataset

from ..errors import InputError, NotFound
from .display import cell, html_fields, html_table, text_block
from .filters import Level

if TYPE_CHECKING:
    import pandas as pd

    from .images import Picture, Preview, Volume
    from .query import FindNode

__all__ = ["COLUMNS", "Instance", "Patient", "Results", "Series", "Study"]


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _date(ds: Dataset, keyword: str) -> date | None:
    text = _text(ds, keyword)[:8]
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
    except ValueError:
        return None


def _multi(ds: Dataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(p.strip() for i in items for p in str(i).split("\\") if p.strip()))


def _join(*values: Any) -> str:
    return "  ".join(text for v in values if (text := cell(v)))


def _quoted(text: str) -> str:
    return f'"{cell(text, 40)}"' if text else ""


def _counts(*pairs: tuple[int | None, str]) -> str:
    return ", ".join(f"{n} {what}" for n, what in pairs if n is not None)


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return name if name and name != uid else uid


def _applied(
    stream: Iterator[Dataset], pseudonymizer: Callable[[Dataset], Dataset] | None
) -> Iterator[Dataset]:
    try:
        for ds in stream:
            yield pseudonymizer(ds) if pseudonymizer is not None else ds
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stopping early ends the C-GET (or HTTP stream) at once


@dataclass(frozen=True)
class _Result(ABC):
    """Shared parts: where the result came from and what the node answered."""

    LEVEL: ClassVar[Level]
    COLUMNS: ClassVar[tuple[str, ...]]

    identifier: Dataset = field(repr=False, compare=False)
    node: FindNode | None = field(default=None, repr=False, compare=False)
    via: str = field(default="auto", repr=False, compare=False)

    @abstractmethod
    def row(self) -> dict[str, Any]:
        """This result as one DataFrame row (see :data:`COLUMNS`)."""

    @abstractmethod
    def fields(self) -> list[tuple[str, Any]]:
        """(label, value) pairs to show, most telling first."""

    @abstractmethod
    def line(self) -> str:
        """This result in one short line (what a list of results shows per item)."""

    def _where(self) -> str:
        name = getattr(self.node, "name", None)
        return f" on {name}" if isinstance(name, str) else ""

    def __repr__(self) -> str:
        title = f"{type(self).__name__}{self._where()}"
        return text_block(title, (f"{k:<13}{cell(v, 80)}" for k, v in self.fields() if cell(v)))

    def _repr_html_(self) -> str:
        return html_fields(f"{type(self).__name__}{self._where()}", self.fields())

    def _need_node(self) -> FindNode:
        if self.node is None:
            raise ValueError(f"this {self.LEVEL.name.lower()} was not found on a node")
        return self.node

    def _retrieve(
        self,
        level: str,
        *,
        pseudonym: str | None,
        project: str | None,
        pseudonymizer: Callable[[Dataset], Dataset] | None,
    ) -> Iterator[Dataset]:
        """Stream this result's instances from its node (a guarded node checks the source
        role and audits the retrieve), pseudonymized when asked."""
        node = self._need_node()
        query = Dataset()
        keys = (("StudyInstanceUID", "study_uid"), ("SeriesInstanceUID", "series_uid"),
                ("SOPInstanceUID", "sop_instance_uid"))  # fmt: skip
        for keyword, attribute in keys:
            value = getattr(self, attribute, "")
            if value:
                setattr(query, keyword, value)
        if pseudonymizer is None and (pseudonym is not None or project is not None):
            make = getattr(node, "pseudonymizer", None)
            if make is None:
                raise InputError(
                    "this node cannot pseudonymize by itself: pass "
                    "pseudonymizer=wb.pseudonymizer(project=...) instead of pseudonym="
                )
            pseudonymizer = make(pseudonym=pseudonym, project=project)
        retrieve = getattr(node, "retrieve", None)
        if not callable(retrieve):
            raise InputError(
                f"{getattr(node, 'name', 'this node')} cannot stream instances into this "
                "process; transfer them to a folder node instead"
            )
        via = {"via": self.via} if self.via not in ("", "auto") else {}
        # Called now, not on the first next(): a refused role fails at the call.
        return _applied(retrieve(level, query, **via), pseudonymizer)

    def _find(self, method: str, **kwargs: Any) -> Results[Any]:
        """The next level down, through the node's own typed method when it has one (a
        guarded node checks and audits it as one query), else the query function."""
        node = self._need_node()
        bound = getattr(node, method, None)
        if callable(bound):
            return cast("Results[Any]", bound(**kwargs))
        from . import query

        return cast("Results[Any]", getattr(query, method)(node, **kwargs))


@dataclass(frozen=True, repr=False)
class Patient(_Result):
    """A patient as a node answered it."""

    LEVEL: ClassVar[Level] = Level.PATIENT
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    )

    patient_id: str = ""
    patient_name: str = ""
    birth_date: date | None = None
    sex: str = ""
    study_count: int | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset, node: FindNode | None = None, via: str = "auto") -> Patient:
        """Build from a C-FIND/QIDO answer."""
        return cls(
            identifier=ds,
            node=node,
            via=via,
            patient_id=_text(ds, "PatientID"),
            patient_name=_text(ds, "PatientName"),
            birth_date=_date(ds, "PatientBirthDate"),
            sex=_text(ds, "PatientSex"),
            study_count=_int(ds, "NumberOfPatientRelatedStudies"),
        )

    def fields(self) -> list[tuple[str, Any]]:
        return [("patient id", self.patient_id), ("name", self.patient_name),
                ("birth date", self.birth_date), ("sex", self.sex),
                ("studies", self.study_count)]  # fmt: skip

    def line(self) -> str:
        count = f" ({self.study_count} studies)" if self.study_count is not None else ""
        return _join(self.patient_id, self.patient_name, self.birth_date, self.sex) + count

    def row(self) -> dict[str, Any]:
        return dict(zip(self.COLUMNS, (self.patient_id, self.patient_name, self.birth_date,
                                       self.sex, self.study_count), strict=True))  # fmt: skip

    def studies(self, *, limit: int | None = None, **filters: Any) -> Results[Study]:
        """This patient's studies on the same node, optionally narrowed further."""
        return self._find(
            "find_studies", limit=limit, via=self.via, patient_id=self.patient_id, **filters
        )


@dataclass(frozen=True, repr=False)
class Study(_Result):
    """A study as a node answered it."""

    LEVEL: ClassVar[Level] = Level.STUDY
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "StudyInstanceUID",
    )

    study_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    birth_date: date | None = None
    sex: str = ""
    study_date: date | None = None
    study_time: str = ""
    accession_number: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ()
    series_count: int | None = None
    instance_count: int | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset, node: FindNode | None = None, via: str = "auto") -> Study:
        """Build from a C-FIND/QIDO answer."""
        return cls(
            identifier=ds,
            node=node,
            via=via,
            study_uid=_text(ds, "StudyInstanceUID"),
            patient_id=_text(ds, "PatientID"),
            patient_name=_text(ds, "PatientName"),
            birth_date=_date(ds, "PatientBirthDate"),
            sex=_text(ds, "PatientSex"),
            study_date=_date(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            accession_number=_text(ds, "AccessionNumber"),
            description=_text(ds, "StudyDescription"),
            modalities=_multi(ds, "ModalitiesInStudy"),
            series_count=_int(ds, "NumberOfStudyRelatedSeries"),
            instance_count=_int(ds, "NumberOfStudyRelatedInstances"),
        )

    def fields(self) -> list[tuple[str, Any]]:
        hhmm = self.study_time[:4]
        when = f"{hhmm[:2]}:{hhmm[2:]}" if len(hhmm) == 4 and hhmm.isdigit() else self.study_time
        return [("date", _join(self.study_date, when)),
                ("modalities", self.modalities), ("description", self.description),
                ("patient", _join(self.patient_id, self.patient_name)),
                ("birth date", self.birth_date), ("sex", self.sex),
                ("accession", self.accession_number), ("series", self.series_count),
                ("instances", self.instance_count), ("study uid", self.study_uid)]  # fmt: skip

    def line(self) -> str:
        counts = _counts((self.series_count, "series"), (self.instance_count, "instances"))
        return _join(self.study_date, ",".join(self.modalities), _quoted(self.description),
                     self.patient_id, counts, self.study_uid)  # fmt: skip

    def row(self) -> dict[str, Any]:
        values = (self.patient_id, self.patient_name, self.birth_date, self.sex, self.study_date,
                  self.study_time, self.accession_number, self.description,
                  ",".join(self.modalities), self.series_count, self.instance_count,
                  self.study_uid)  # fmt: skip
        return dict(zip(self.COLUMNS, values, strict=True))

    def series(self, *, limit: int | None = None, **filters: Any) -> Results[Series]:
        """This study's series on the same node, optionally narrowed (e.g. ``modality="CT"``)."""
        return self._find(
            "find_series", limit=limit, via=self.via, study_uid=self.study_uid, **filters
        )

    def datasets(
        self,
        *,
        pseudonym: str | None = None,
        project: str | None = None,
        pseudonymizer: Callable[[Dataset], Dataset] | None = None,
    ) -> Iterator[Dataset]:
        """Stream every instance of this study from its node (see :meth:`Series.datasets`)."""
        return self._retrieve("STUDY", pseudonym=pseudonym, project=project,
                              pseudonymizer=pseudonymizer)  # fmt: skip

    def preview(self, *, max_series: int = 12, size: int = 160) -> Preview:
        """The middle slice of each series (at most ``max_series``) as pictures with the
        series number, modality and description as captions. A series without a picture
        (a report, undecodable pixels) is listed in ``skipped`` with the reason."""
        from .images import Preview

        pictures, skipped = [], []
        for series in self.series()[:max_series]:
            try:
                pictures.append(series.thumbnail(size=size))
            except InputError as exc:  # this series has no picture: say so, show the rest
                skipped.append((series.line(), str(exc)))
        title = f"{cell(self.study_date)} {self.description}".strip()
        return Preview(pictures, title=title, skipped=skipped)


@dataclass(frozen=True, repr=False)
class Series(_Result):
    """A series as a node answered it."""

    LEVEL: ClassVar[Level] = Level.SERIES
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    )

    series_uid: str = ""
    study_uid: str = ""
    modality: str = ""
    series_number: int | None = None
    description: str = ""
    instance_count: int | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset, node: FindNode | None = None, via: str = "auto") -> Series:
        """Build from a C-FIND/QIDO answer."""
        return cls(
            identifier=ds,
            node=node,
            via=via,
            series_uid=_text(ds, "SeriesInstanceUID"),
            study_uid=_text(ds, "StudyInstanceUID"),
            modality=_text(ds, "Modality"),
            series_number=_int(ds, "SeriesNumber"),
            description=_text(ds, "SeriesDescription"),
            instance_count=_int(ds, "NumberOfSeriesRelatedInstances"),
        )

    def fields(self) -> list[tuple[str, Any]]:
        return [("number", self.series_number), ("modality", self.modality),
                ("description", self.description), ("instances", self.instance_count),
                ("series uid", self.series_uid), ("study uid", self.study_uid)]  # fmt: skip

    def line(self) -> str:
        number = f"#{self.series_number}" if self.series_number is not None else ""
        counts = _counts((self.instance_count, "instances"))
        return _join(number, self.modality, _quoted(self.description), counts, self.series_uid)

    def row(self) -> dict[str, Any]:
        values = (self.study_uid, self.series_uid, self.modality, self.series_number,
                  self.description, self.instance_count)  # fmt: skip
        return dict(zip(self.COLUMNS, values, strict=True))

    def instances(self, *, limit: int | None = None, **filters: Any) -> Results[Instance]:
        """This series' instances on the same node."""
        return self._find(
            "find_instances",
            limit=limit,
            via=self.via,
            study_uid=self.study_uid,
            series_uid=self.series_uid,
            **filters,
        )

    def datasets(
        self,
        *,
        pseudonym: str | None = None,
        project: str | None = None,
        pseudonymizer: Callable[[Dataset], Dataset] | None = None,
    ) -> Iterator[Dataset]:
        """Stream this series' instances from its node, one Dataset at a time.

        Fetched over the node's retrieve path (C-GET, WADO-RS or the folder's files), so a
        user's node checks the source role and audits it. ``pseudonym=`` (or
        ``project=``) pseudonymizes each instance as a transfer job of that project would
        (the project's key; PatientID and PatientName become ``pseudonym``);
        ``pseudonymizer=`` applies any other, e.g. ``wb.pseudonymizer(profile="adit")``.
        """
        return self._retrieve("SERIES", pseudonym=pseudonym, project=project,
                              pseudonymizer=pseudonymizer)  # fmt: skip

    def volume(self) -> Volume:
        """The series as a :class:`~.images.Volume`: a NumPy array (slices, rows, columns)
        in modality units, sorted along the slice normal, with spacing and orientation."""
        from .images import volume_from

        return volume_from(self.datasets())

    def thumbnail(self, *, size: int = 256) -> Picture:
        """The middle instance as a windowed picture (shown as PNG in a notebook)."""
        instances = sorted(self.instances(), key=lambda i: i.instance_number or 0)
        if not instances:
            raise InputError(f"series {self.series_uid} has no instances on the node")
        picture = instances[len(instances) // 2].thumbnail(size=size)
        number = f"#{self.series_number} " if self.series_number is not None else ""
        caption = f"{number}{self.modality} {self.description}".strip()
        return dataclasses.replace(picture, caption=caption)


@dataclass(frozen=True, repr=False)
class Instance(_Result):
    """An instance (image) as a node answered it."""

    LEVEL: ClassVar[Level] = Level.INSTANCE
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    )

    sop_instance_uid: str = ""
    series_uid: str = ""
    study_uid: str = ""
    sop_class_uid: str = ""
    instance_number: int | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset, node: FindNode | None = None, via: str = "auto") -> Instance:
        """Build from a C-FIND/QIDO answer."""
        return cls(
            identifier=ds,
            node=node,
            via=via,
            sop_instance_uid=_text(ds, "SOPInstanceUID"),
            series_uid=_text(ds, "SeriesInstanceUID"),
            study_uid=_text(ds, "StudyInstanceUID"),
            sop_class_uid=_text(ds, "SOPClassUID"),
            instance_number=_int(ds, "InstanceNumber"),
        )

    def fields(self) -> list[tuple[str, Any]]:
        return [("number", self.instance_number), ("class", _sop_name(self.sop_class_uid)),
                ("sop uid", self.sop_instance_uid), ("series uid", self.series_uid),
                ("study uid", self.study_uid)]  # fmt: skip

    def line(self) -> str:
        number = f"#{self.instance_number}" if self.instance_number is not None else ""
        return _join(number, _sop_name(self.sop_class_uid), self.sop_instance_uid)

    def dataset(
        self,
        *,
        pseudonym: str | None = None,
        project: str | None = None,
        pseudonymizer: Callable[[Dataset], Dataset] | None = None,
    ) -> Dataset:
        """This instance, fetched from its node (see :meth:`Series.datasets`)."""
        stream = self._retrieve("IMAGE", pseudonym=pseudonym, project=project,
                                pseudonymizer=pseudonymizer)  # fmt: skip
        try:
            for ds in stream:
                return ds
        finally:
            stream.close()  # type: ignore[attr-defined]
        raise NotFound(f"instance {self.sop_instance_uid} is no longer on the node")

    def thumbnail(self, *, size: int = 256) -> Picture:
        """This instance as a windowed picture (shown as PNG in a notebook)."""
        from .images import thumbnail_of

        number = f"#{self.instance_number}" if self.instance_number is not None else ""
        return thumbnail_of(self.dataset(), number, size=size)

    def row(self) -> dict[str, Any]:
        values = (self.study_uid, self.series_uid, self.sop_instance_uid, self.sop_class_uid,
                  self.instance_number)  # fmt: skip
        return dict(zip(self.COLUMNS, values, strict=True))


#: Result class per level.
RESULT_TYPES: dict[Level, type[_Result]] = {
    Level.PATIENT: Patient,
    Level.STUDY: Study,
    Level.SERIES: Series,
    Level.INSTANCE: Instance,
}
#: DataFrame columns per level.
COLUMNS: dict[Level, tuple[str, ...]] = {lvl: cls.COLUMNS for lvl, cls in RESULT_TYPES.items()}

_DATE_COLUMNS = ("PatientBirthDate", "StudyDate")
_INT_COLUMNS = (
    "NumberOfPatientRelatedStudies",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances",
    "SeriesNumber",
    "InstanceNumber",
)
_PLURAL = {Level.PATIENT: "patients", Level.STUDY: "studies", Level.SERIES: "series",
           Level.INSTANCE: "instances"}  # fmt: skip

T = TypeVar("T", bound=_Result)


class Results(Sequence[T], Generic[T]):
    """A read-only list of query results with a DataFrame view and a truncation flag.

    Attributes
    ----------
    level:
        The level of every item.
    truncated:
        True when the node had more matches than ``limit``: the list is incomplete.
    limit:
        The cap that applied (per call or per node, whichever was lower).
    node_name, route:
        Where and how the query ran (for display).
    """

    def __init__(
        self,
        items: Sequence[T],
        level: Level,
        *,
        truncated: bool = False,
        limit: int | None = None,
        node_name: str = "",
        route: str = "",
    ) -> None:
        self._items = tuple(items)
        self.level = level
        self.truncated = truncated
        self.limit = limit
        self.node_name = node_name
        self.route = route

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Results[T]: ...
    def __getitem__(self, index: int | slice) -> T | Results[T]:
        if isinstance(index, slice):
            return Results(self._items[index], self.level, node_name=self.node_name,
                           route=self.route)  # fmt: skip
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def with_node(self, node: FindNode) -> Results[T]:
        """The same results navigating through ``node`` (e.g. the guarded node of a user)."""
        items = [dataclasses.replace(item, node=node) for item in self._items]
        return Results(items, self.level, truncated=self.truncated, limit=self.limit,
                       node_name=self.node_name, route=self.route)  # fmt: skip

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    @property
    def df(self) -> pd.DataFrame:
        """The results as a DataFrame with the documented columns of this level."""
        import pandas as pd  # on first use: a second or more that a search never needs

        columns = list(COLUMNS[self.level])
        frame = pd.DataFrame([item.row() for item in self._items], columns=columns)
        for name in columns:
            if name in _DATE_COLUMNS:
                frame[name] = pd.to_datetime(frame[name], errors="coerce")
            elif name in _INT_COLUMNS:
                frame[name] = frame[name].astype("Int64")
            else:
                frame[name] = frame[name].fillna("").astype(str)
        frame.attrs["truncated"] = self.truncated
        frame.attrs["node"] = self.node_name  # wb.transfer(frame[mask]) knows the source
        return frame

    def plot(self, *, by: str | None = None, ax: Any = None) -> Any:
        """Studies over time by modality: a stacked bar chart (matplotlib), one bar per
        month, or per year when the studies span more than three years.

        ``by`` forces ``"year"``, ``"month"`` or ``"day"``; ``ax`` draws into existing
        axes. Returns the matplotlib Axes. A study with CT and MR counts once for each.
        """
        if self.level is not Level.STUDY:
            raise InputError(f"plot() shows studies over time; these are {_PLURAL[self.level]}")
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise InputError(
                "plot() needs matplotlib: pip install 'adit-workbench[jupyter]'"
            ) from exc
        frame = self.df[["StudyDate", "ModalitiesInStudy"]].dropna(subset=["StudyDate"])
        frame = frame.assign(Modality=frame["ModalitiesInStudy"].replace("", "?").str.split(","))
        frame = frame.explode("Modality")
        span = (frame["StudyDate"].max() - frame["StudyDate"].min()).days if len(frame) else 0
        unit = by or ("year" if span > 3 * 366 else "month")
        codes = {"year": "Y", "month": "M", "day": "D"}
        if unit not in codes:
            raise InputError(f"by must be 'year', 'month' or 'day', not {by!r}")
        frame["period"] = frame["StudyDate"].dt.to_period(codes[unit]).astype(str)
        counts = frame.groupby(["period", "Modality"]).size().unstack(fill_value=0)
        if ax is None:
            _, ax = plt.subplots(figsize=(min(12, 3 + 0.35 * max(len(counts), 1)), 3.5))
        if len(counts):
            counts.plot(kind="bar", stacked=True, ax=ax, width=0.85)
        ax.set_xlabel(unit)
        ax.set_ylabel("studies")
        ax.set_title(self.summary() if len(self.summary()) < 80 else f"{len(self)} studies")
        return ax

    def summary(self) -> str:
        """One line: how many, of what, from where, and whether truncated."""
        what = _PLURAL[self.level]
        text = f"{len(self)} {what}"
        if self.node_name:
            text += f" on {self.node_name}"
        if self.route:
            text += f" ({self.route})"
        if self.truncated:
            text += (
                f" - TRUNCATED at {self.limit}: the node has more; narrow the filters "
                "or raise limit"
            )
        return text

    def __repr__(self) -> str:
        return text_block(self.summary(), (item.line() for item in self._items), max_lines=12)

    def _repr_html_(self) -> str:
        columns = COLUMNS[self.level]
        rows = ([item.row()[c] for c in columns] for item in self._items)
        return html_table(columns, rows, title=self.summary(), warn=self.truncated,
                          total=len(self), note="all rows: .df")  # fmt: skip
