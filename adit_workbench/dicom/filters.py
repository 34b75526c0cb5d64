"""Query filters: from the keywords a person types to DICOM matching keys, and back again.

:func:`normalize` turns ``find_studies(patient_name="Doe, J", study_date=("2020-01-01", None),
modality=["CT", "MR"])`` into a :class:`Query`: one DICOM matching value per attribute
(``"Doe*^J*"``, ``"20200101-"``), the modalities kept apart because C-FIND takes one per
request, and the level every filter belongs to checked against the level asked for.

:func:`matches` is the client-side re-filter. Some PACS ignore some matching keys (ADIT
found this with Synapse), so every answer is checked again here against what was asked:
names and descriptions case-insensitively with DICOM wildcards, dates against their range,
sex, modalities, series numbers, IDs and UIDs. A row whose answer leaves an attribute empty
is kept: an empty return value says nothing about the record, so dropping it would hide data.

Nothing here does I/O. Error messages name the filter, never its value (values may be PHI).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableSequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword

from ..errors import InputError
from .node import QueryLevel

__all__ = [
    "DATE_GRAMMAR",
    "FILTERS",
    "Level",
    "Query",
    "date_range",
    "matches",
    "normalize",
    "parse_date",
    "parse_period",
    "patient_name_pattern",
    "wildcard_match",
]


#: The query level of the node layer (INSTANCE is an alias of IMAGE).
Level = QueryLevel

#: The named filters: Python keyword → DICOM keyword. ``modality`` maps to
#: ModalitiesInStudy at patient/study level and to Modality below.
FILTERS: Mapping[str, str] = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
    "accession_number": "AccessionNumber",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "modality": "Modality",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "series_number": "SeriesNumber",
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
}

_ALIASES = {
    "birth_date": "patient_birth_date",
    "sex": "patient_sex",
    "modalities": "modality",
    "series_numbers": "series_number",
    "study_instance_uid": "study_uid",
    "series_instance_uid": "series_uid",
    "instance_uid": "sop_instance_uid",
}

#: The level each named attribute lives on; raw keywords default to the query's own level.
KEYWORD_LEVEL: Mapping[str, Level] = {
    "PatientID": Level.PATIENT,
    "PatientName": Level.PATIENT,
    "PatientBirthDate": Level.PATIENT,
    "PatientSex": Level.PATIENT,
    "AccessionNumber": Level.STUDY,
    "StudyDate": Level.STUDY,
    "StudyTime": Level.STUDY,
    "StudyDescription": Level.STUDY,
    "StudyInstanceUID": Level.STUDY,
    "ModalitiesInStudy": Level.STUDY,
    "Modality": Level.SERIES,
    "SeriesDescription": Level.SERIES,
    "SeriesNumber": Level.SERIES,
    "SeriesInstanceUID": Level.SERIES,
    "SOPInstanceUID": Level.INSTANCE,
}

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DICOM_DATE = re.compile(r"^\d{8}$")
_DICOM_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$")
_MONTH = re.compile(r"^(\d{4})-?(\d{2})$")
_YEAR = re.compile(r"^\d{4}$")
_DOTTED_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")
_ISO_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
#: The one date grammar of the API, the CLI and batch files (a month or year is a range).
DATE_GRAMMAR = "YYYY-MM-DD, YYYYMMDD, DD.MM.YYYY, YYYY-MM (a month) or YYYY (a year)"
_TIME = re.compile(r"^(\d{2}):?(\d{2})?:?(\d{2})?(\.\d{1,6})?$")

DateLike = date | datetime | str
DateFilter = DateLike | tuple[DateLike | None, DateLike | None] | None


@dataclass(frozen=True)
class Query:
    """A normalised query: what to ask a node and what to check its answers against.

    Attributes
    ----------
    level:
        The level the caller wants results at.
    criteria:
        DICOM keyword → matching value in DICOM form (wildcards, ``"from-until"`` ranges,
        backslash-separated UID lists). Modalities and several series numbers are not here.
    modalities:
        Requested modalities (upper case, de-duplicated, in the caller's order).
    series_numbers:
        Requested series numbers; one is also sent to the node, several only re-filter.
    """

    level: Level
    criteria: Mapping[str, str] = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    series_numbers: tuple[int, ...] = ()

    def with_criteria(self, level: Level | None = None, **extra: str) -> Query:
        """A copy at another level and/or with more criteria (used to navigate down)."""
        merged = dict(self.criteria)
        merged.update(extra)
        return Query(level or self.level, merged, self.modalities, self.series_numbers)


def normalize(level: str | Level, filters: Mapping[str, Any] | None = None, **kw: Any) -> Query:
    """Turn keyword filters into a :class:`Query` for ``level``.

    Accepts the named filters of :data:`FILTERS` (and a few aliases such as ``birth_date``),
    or any DICOM keyword from the pydicom dictionary. ``None`` and ``""`` mean "no filter".

    Raises
    ------
    InputError
        Unknown keyword, a value of the wrong shape, a filter twice, or a filter on a level
        below ``level`` (e.g. ``series_description`` for ``find_studies``).
    """
    lvl = Level.parse(level)
    given = dict(filters or {})
    given.update(kw)
    criteria: dict[str, str] = {}
    modalities: tuple[str, ...] = ()
    series_numbers: tuple[int, ...] = ()
    for name, value in given.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        name = _ALIASES.get(name, name)
        keyword = FILTERS.get(name) or _raw_keyword(name)
        if keyword in ("Modality", "ModalitiesInStudy"):
            modalities = _modalities(value, name)
            _check_level(lvl, Level.STUDY if lvl.depth <= 1 else Level.SERIES, name)
            continue
        if keyword == "SeriesNumber":
            series_numbers = _series_numbers(value, name)
            _check_level(lvl, Level.SERIES, name)
            if len(series_numbers) == 1:
                criteria[keyword] = str(series_numbers[0])
            continue
        _check_level(lvl, KEYWORD_LEVEL.get(keyword, lvl), name)
        if keyword in criteria:
            raise InputError(f"filter {name!r} is given twice")
        criteria[keyword] = _dicom_value(keyword, value, name)
    return Query(lvl, criteria, modalities, series_numbers)


def _raw_keyword(name: str) -> str:
    if tag_for_keyword(name) is None:
        raise InputError(
            f"unknown query filter {name!r}: use one of {', '.join(FILTERS)} "
            "or a DICOM keyword such as ReferringPhysicianName"
        )
    return name


def _check_level(level: Level, needed: Level, name: str) -> None:
    # Patient queries may be narrowed by study attributes: they are answered at study level.
    if needed.depth > max(level.depth, Level.STUDY.depth):
        raise InputError(
            f"filter {name!r} applies to {needed.name.lower()} level and cannot narrow a "
            f"{level.name.lower()} query: query at {needed.name.lower()} level instead"
        )


def _dicom_value(keyword: str, value: Any, name: str) -> str:
    vr = dictionary_VR(keyword)
    if keyword == "PatientName":
        return patient_name_pattern(_text(value, name))
    if vr == "DA":
        return date_range(value, name)
    if vr == "TM":
        return _time_range(value, name)
    if vr == "UI":
        uids = _as_list(value)
        for uid in uids:
            if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid.strip()):
                raise InputError(f"filter {name!r} is not a valid UID (digits and dots)")
        return "\\".join(u.strip() for u in uids)
    if isinstance(value, (list, tuple, set, frozenset)):
        raise InputError(f"filter {name!r} takes one value")
    return _text(value, name)


def _text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"filter {name!r} must be text")
    return str(value).strip()


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v for v in value.replace("\\", ",").split(",") if v.strip()]
    if isinstance(value, Iterable):
        return [v for v in value if v is not None and str(v).strip()]
    return [value]


def _modalities(value: Any, name: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in _as_list(value):
        text = str(item).strip().upper()
        if not re.fullmatch(r"[A-Z0-9_]{1,16}", text):
            raise InputError(f"filter {name!r}: a modality is 1–16 letters or digits, e.g. CT")
        seen.setdefault(text, None)
    return tuple(seen)


def _series_numbers(value: Any, name: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(int(str(v).strip()) for v in _as_list(value)))
    except ValueError:
        raise InputError(f"filter {name!r} must be whole numbers") from None


def patient_name_pattern(text: str) -> str:
    """``"Last, First"`` → ``"Last*^First*"``; anything without a comma is left as typed.

    The comma form is how people write names; the wildcards let ``"Doe, J"`` find
    ``DOE^JOHN^^^`` (middle names, suffixes) the way a person expects.
    """
    if "," not in text:
        return text
    last, _, first = (part.strip() for part in text.partition(","))
    last = last if last.endswith("*") or not last else last + "*"
    if not first:
        return last or "*"
    first = first if first.endswith("*") else first + "*"
    return f"{last or '*'}^{first}"


def parse_period(value: DateLike, name: str = "date") -> tuple[date, date]:
    """The first and last day ``value`` stands for, in :data:`DATE_GRAMMAR`.

    A day is a period of one day; ``"2020-01"`` (or ``"202001"``) is January 2020 and
    ``"2020"`` the whole year. The error echoes the value and the accepted forms.
    """
    if isinstance(value, datetime):
        return value.date(), value.date()
    if isinstance(value, date):
        return value, value
    text = str(value).strip()
    try:
        day: date | None = None
        if (m := _ISO_DATE.match(text)) or (m := _ISO_DATETIME.match(text)):
            day = date(int(m[1]), int(m[2]), int(m[3]))
        elif _DICOM_DATE.match(text):
            day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
        elif m := _DOTTED_DATE.match(text):
            day = date(int(m[3]), int(m[2]), int(m[1]))
        if day is not None:
            return day, day
        if m := _MONTH.match(text):
            year, month = int(m[1]), int(m[2])
            following = date(year + month // 12, month % 12 + 1, 1)
            return date(year, month, 1), date.fromordinal(following.toordinal() - 1)
        if _YEAR.match(text):
            return date(int(text), 1, 1), date(int(text), 12, 31)
    except ValueError:
        pass
    raise InputError(f"filter {name!r}: {text[:40]!r} is not a date; expected {DATE_GRAMMAR}")


def parse_date(value: DateLike, name: str = "date") -> date:
    """One day in :data:`DATE_GRAMMAR` (a month or year is refused: it is not one day)."""
    first, last = parse_period(value, name)
    if first != last:
        raise InputError(f"filter {name!r}: {str(value)[:40]!r} is a period, not one day")
    return first


def date_range(value: DateFilter, name: str = "date") -> str:
    """A date filter in DICOM range form: ``"20200131"``, ``"20200101-20201231"``, ``"20200101-"``.

    Accepts one date, a ``(from, until)`` pair with either end ``None`` or ``""``, or a
    DICOM range string as typed on the command line (``"20200101-"``).
    """
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"filter {name!r}: a range is a (from, until) pair")
        empty = (None, "")
        start = None if value[0] in empty else parse_period(value[0], name)[0]
        end = None if value[1] in empty else parse_period(value[1], name)[1]
        if start and end and start > end:
            raise InputError(f"filter {name!r}: the range ends before it starts")
        if start and end and start == end:
            return f"{start:%Y%m%d}"
        left = f"{start:%Y%m%d}" if start else ""
        right = f"{end:%Y%m%d}" if end else ""
        return f"{left}-{right}" if left or right else ""
    if isinstance(value, str) and (m := _DICOM_RANGE.match(value.strip())):
        return date_range((m[1], m[2]), name)
    first, last = parse_period(value, name)
    return f"{first:%Y%m%d}" if first == last else f"{first:%Y%m%d}-{last:%Y%m%d}"


def _time_range(value: Any, name: str) -> str:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"filter {name!r}: a range is a (from, until) pair")
        start, end = (_time(v, name) if v not in (None, "") else "" for v in value)
        return f"{start}-{end}" if start or end else ""
    if isinstance(value, str) and "-" in value:
        return _time_range(tuple(value.split("-", 1)), name)
    return _time(value, name)


def _time(value: Any, name: str) -> str:
    if isinstance(value, datetime):
        value = value.time()
    if isinstance(value, time):
        return value.strftime("%H%M%S")
    if isinstance(value, str) and (m := _TIME.match(value.strip())):
        return "".join(part or "" for part in (m[1], m[2], m[3]))
    raise InputError(f"filter {name!r}: expected a time as HHMMSS or HH:MM:SS")


# -- client-side re-filter ----------------------------------------------------------------


@lru_cache(maxsize=512)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def wildcard_match(pattern: str, value: str) -> bool:
    """DICOM wildcard matching (``*``, ``?``) on the whole value, ignoring case."""
    return _wildcard_regex(pattern).fullmatch(value) is not None


def _returned(ds: Dataset, keyword: str) -> Any:
    value = ds.get(keyword)
    if value is None or value == "" or (isinstance(value, MutableSequence) and not value):
        return None
    return value


def _date_in(spec: str, value: Any) -> bool:
    try:
        day = parse_date(str(value).strip()[:8])
    except InputError:
        return True  # an unreadable date in an answer is the PACS's problem, not a mismatch
    start, _, end = spec.partition("-") if "-" in spec else (spec, "", spec)
    if start and day < parse_date(start):
        return False
    return not (end and day > parse_date(end))


def _pn_text(value: Any) -> str:
    return str(value).split("=")[0].rstrip("^")


def matches(query: Query, ds: Dataset) -> bool:
    """Whether one answer agrees with ``query`` on every attribute it returned.

    Raw keywords other than the named filters are left to the node.
    """
    for keyword, spec in query.criteria.items():
        value = _returned(ds, keyword)
        if value is None or not spec:
            continue
        if keyword == "PatientName":
            if spec != "*" and not wildcard_match(spec, _pn_text(value)):
                return False
        elif keyword in ("PatientBirthDate", "StudyDate"):
            if not _date_in(spec, value):
                return False
        elif keyword.endswith("UID") and keyword in KEYWORD_LEVEL:
            if str(value) not in spec.split("\\"):
                return False
        elif keyword in _WILDCARD_TEXT and not wildcard_match(spec, str(value).strip()):
            return False
    if query.modalities and not _modalities_match(query, ds):
        return False
    if query.series_numbers:
        number = _returned(ds, "SeriesNumber")
        try:
            if number is not None and int(number) not in query.series_numbers:
                return False
        except (TypeError, ValueError):
            pass
    return True


_WILDCARD_TEXT = frozenset(
    {
        "PatientID",
        "PatientSex",
        "AccessionNumber",
        "StudyDescription",
        "SeriesDescription",
        "SeriesNumber",
    }
)


def _modalities_match(query: Query, ds: Dataset) -> bool:
    wanted = set(query.modalities)
    if query.level.depth >= Level.SERIES.depth:
        value = _returned(ds, "Modality")
        return value is None or str(value).upper() in wanted
    value = _returned(ds, "ModalitiesInStudy")
    if value is None:
        return True
    values = value if isinstance(value, MutableSequence | tuple) else [value]
    found = {str(v).upper() for v in values}
    # pydicom may keep "CT\MR" as one string when the VR was unknown on the wire
    found = {part for item in found for part in item.split("\\")}
    return bool(wanted & found)
