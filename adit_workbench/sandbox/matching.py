"""C-FIND attribute matching (PS3.4 C.2.2.2) over flat records of DICOM text values.

A *record* is a ``dict`` from attribute keyword to its DICOM string form (multiple values
joined by backslash), as the archive index stores it. Matching is deliberately the subset
real archives agree on: universal matching of empty keys, single values, ``*``/``?``
wildcards, date/time ranges (``A-B``, ``A-``, ``-B``) and value lists (``A\\B``, the usual
form being a UID list). Person names match case-insensitively, as most PACS do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

__all__ = [
    "LEVELS",
    "TEXT_VRS",
    "UNIQUE_KEYS",
    "build_response",
    "matches",
    "text_attributes",
]

#: Query/Retrieve levels, top down.
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
#: The unique key of each level.
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
#: Value representations kept in the index (string-valued, so matchable).
TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
)
_SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_NO_WILDCARD_VRS = frozenset({"DA", "TM", "DT", "UI"})
# Keys that steer the query rather than select records.
_CONTROL_KEYWORDS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"})


def text_attributes(ds: Dataset) -> dict[str, str]:
    """The top-level, public, string-valued attributes of ``ds`` in DICOM string form.

    Sequences, binary values and private tags are left out: they are not matchable and
    would only bloat the index.
    """
    out: dict[str, str] = {}
    for elem in ds:
        # int(): pydicom leaves a plain int as the tag of some elements it could not
        # convert (an over-long value), which has no ``is_private``.
        if int(elem.tag) >> 16 & 1 or elem.VR not in TEXT_VRS or not elem.keyword:
            continue
        value = elem.value
        if value is None or value == "":
            continue
        if elem.VM > 1:
            out[elem.keyword] = "\\".join(str(v) for v in value)
        else:
            out[elem.keyword] = str(value)
    return out


@lru_cache(maxsize=512)
def _wildcard_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _normalise_time(value: str, pad: str) -> str:
    digits = value.replace(":", "").split(".", 1)[0]
    return digits.ljust(6, pad)


def _in_range(query: str, stored: str, vr: str) -> bool:
    low, high = query.split("-", 1)
    if vr == "DA":
        value = stored.replace(".", "")[:8]
        return (not low or value >= low) and (not high or value <= high)
    if vr == "TM":
        value = _normalise_time(stored, "0")
        return (not low or value >= _normalise_time(low, "0")) and (
            not high or value <= _normalise_time(high, "9")
        )
    # DT: compare the date-time digits only; a UTC offset would need parsing and no
    # sandbox data carries one.
    value = stored.split("+", 1)[0]
    return (not low or value >= low) and (not high or value <= high.ljust(14, "9"))


def _match_one(query: str, stored: str, vr: str) -> bool:
    if vr in _RANGE_VRS and "-" in query:
        return _in_range(query, stored, vr)
    ignore_case = vr == "PN"
    if vr not in _NO_WILDCARD_VRS and ("*" in query or "?" in query):
        return _wildcard_regex(query, ignore_case).fullmatch(stored) is not None
    if ignore_case:
        return query.strip().upper() == stored.strip().upper()
    if vr in ("IS", "DS"):
        try:
            return float(query) == float(stored)
        except ValueError:
            pass
    return query.strip() == stored.strip()


def _vr_of(tag: BaseTag, fallback: str) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return fallback


def matches(identifier: Dataset, record: Mapping[str, str]) -> bool:
    """Whether ``record`` matches every non-empty matching key of ``identifier``.

    Args:
        identifier: The C-FIND identifier as received (top-level elements only are used;
            sequence keys match universally).
        record: Keyword → DICOM string value.

    Returns:
        True if all keys match. A key the record lacks matches only universally.
    """
    for elem in identifier:
        keyword = elem.keyword
        if not keyword or keyword in _CONTROL_KEYWORDS or elem.VR == "SQ":
            continue
        raw = elem.value
        if raw is None or raw == "":
            continue
        vr = _vr_of(elem.tag, elem.VR)
        query_values = [str(v) for v in raw] if elem.VM > 1 else str(raw).split("\\")
        if all(q in ("*", "") for q in query_values):
            continue
        stored = record.get(keyword)
        if stored is None:
            return False
        stored_values = [stored] if vr in _SINGLE_VALUED_VRS else stored.split("\\")
        if not any(_match_one(q, s, vr) for q in query_values for s in stored_values):
            return False
    return True


def _element(tag: BaseTag, vr: str, value: str | None) -> DataElement:
    if vr == "SQ":
        return DataElement(tag, "SQ", [])
    if value is None or value == "":
        return DataElement(tag, vr, None)
    converted: Any = value
    if vr not in _SINGLE_VALUED_VRS and "\\" in value:
        converted = value.split("\\")
    if vr in ("US", "SS", "UL", "SL"):
        converted = int(value)
    return DataElement(tag, vr, converted)


def build_response(
    identifier: Dataset,
    record: Mapping[str, str],
    level: str,
    *,
    patient_root: bool,
    retrieve_ae_title: str,
) -> Dataset:
    """The C-FIND response identifier: the requested keys plus the keys of the level.

    Requested keys the record lacks come back empty (zero length), as PS3.4 asks. The
    unique keys of this level and the levels above are always present, so that a caller
    can navigate down from any answer.
    """
    rsp = Dataset()
    charset = record.get("SpecificCharacterSet")
    if charset:
        rsp.SpecificCharacterSet = charset.split("\\")
    for elem in identifier:
        keyword = elem.keyword or keyword_for_tag(elem.tag)
        if keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        vr = _vr_of(elem.tag, elem.VR)
        value = retrieve_ae_title if keyword == "RetrieveAETitle" else record.get(keyword)
        rsp.add(_element(elem.tag, vr, value))
    rsp.QueryRetrieveLevel = level
    depth = LEVELS.index(level)
    for key_level in LEVELS[: depth + 1]:
        if key_level == "PATIENT" and not patient_root:
            continue
        keyword = UNIQUE_KEYS[key_level]
        if keyword not in rsp or not rsp[keyword].value:
            setattr(rsp, keyword, record.get(keyword, ""))
    return rsp
