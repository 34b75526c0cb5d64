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

import html
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

import pandas as pd
from pydicom import Dataset

from .filters import Level

if TYPE_CHECKING:
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

    def _need_node(self) -> FindNode:
        if self.node is None:
            raise ValueError(f"this {self.LEVEL.name.lower()} was not found on a node")
        return self.node


@dataclass(frozen=True)
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

    def row(self) -> dict[str, Any]:
        return dict(zip(self.COLUMNS, (self.patient_id, self.patient_name, self.birth_date,
                                       self.sex, self.study_count), strict=True))  # fmt: skip

    def studies(self, *, limit: int | None = None, **filters: Any) -> Results[Study]:
        """This patient's studies on the same node, optionally narrowed further."""
        from .query import find_studies

        return find_studies(
            self._need_node(), limit=limit, via=self.via, patient_id=self.patient_id, **filters
        )


@dataclass(frozen=True)
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

    def row(self) -> dict[str, Any]:
        values = (self.patient_id, self.patient_name, self.birth_date, self.sex, self.study_date,
                  self.study_time, self.accession_number, self.description,
                  ",".join(self.modalities), self.series_count, self.instance_count,
                  self.study_uid)  # fmt: skip
        return dict(zip(self.COLUMNS, values, strict=True))

    def series(self, *, limit: int | None = None, **filters: Any) -> Results[Series]:
        """This study's series on the same node, optionally narrowed (e.g. ``modality="CT"``)."""
        from .query import find_series

        return find_series(
            self._need_node(), limit=limit, via=self.via, study_uid=self.study_uid, **filters
        )


@dataclass(frozen=True)
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

    def row(self) -> dict[str, Any]:
        values = (self.study_uid, self.series_uid, self.modality, self.series_number,
                  self.description, self.instance_count)  # fmt: skip
        return dict(zip(self.COLUMNS, values, strict=True))

    def instances(self, *, limit: int | None = None, **filters: Any) -> Results[Instance]:
        """This series' instances on the same node."""
        from .query import find_instances

        return find_instances(
            self._need_node(),
            limit=limit,
            via=self.via,
            study_uid=self.study_uid,
            series_uid=self.series_uid,
            **filters,
        )


@dataclass(frozen=True)
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

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    @property
    def df(self) -> pd.DataFrame:
        """The results as a DataFrame with the documented columns of this level."""
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
        lines = [self.summary()]
        lines += [f"  {item!r}" for item in self._items[:10]]
        if len(self) > 10:
            lines.append(f"  … {len(self) - 10} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        note = html.escape(self.summary())
        style = "color:#a94400;font-weight:bold" if self.truncated else "color:#555"
        table = self.df.to_html(max_rows=60, index=False, na_rep="")
        return f'<div><p style="{style}">{note}</p>{table}</div>'
