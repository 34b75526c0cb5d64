"""The query plan: which route answers a query, at which level, with which identifiers.

A :class:`~adit_workbench.dicom.filters.Query` says what the caller wants; the plan says
how to ask one node for it:

* the **route** follows what the node was probed to support (:func:`choose_route`):
  study-root C-FIND first, patient-root C-FIND where only that exists (or for a plain
  patient query), QIDO-RS when there is no C-FIND or the caller asks for it;
* the **level asked** is the level wanted, except that patients are asked at study level
  (and grouped afterwards) when the route has no patient level (study root, QIDO) or when
  study attributes narrow the query;
* the **identifiers** (:func:`identifiers`) carry every matching key plus the return keys
  of :data:`RETURN_KEYS`; several modalities become one identifier each, because
  ModalitiesInStudy takes one value in most PACS and list matching is not defined for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache

from pydicom import DataElement, Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword

from ..errors import NotSupported
from .filters import KEYWORD_LEVEL, Level, Query
from .node import Via
from .spec import Capabilities

__all__ = ["RETURN_KEYS", "Route", "Via", "ask_level", "choose_route", "identifiers"]


class Route(StrEnum):
    """How a query travels to the node."""

    STUDY_ROOT = "C-FIND study root"
    PATIENT_ROOT = "C-FIND patient root"
    QIDO = "QIDO-RS"

    @property
    def is_dimse(self) -> bool:
        """True for the two C-FIND routes."""
        return self is not Route.QIDO


_PATIENT = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")

#: Return keys asked at each level (besides the matching keys). They fill the result objects.
RETURN_KEYS: Mapping[Level, tuple[str, ...]] = {
    Level.PATIENT: (*_PATIENT, "NumberOfPatientRelatedStudies"),
    Level.STUDY: (
        *_PATIENT,
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ),
    Level.INSTANCE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    ),
}


def ask_level(query: Query, route: Route) -> Level:
    """The level to ask the node at: study level stands in for a missing patient level."""
    if query.level is not Level.PATIENT:
        return query.level
    narrowed = query.modalities or any(
        KEYWORD_LEVEL.get(k, Level.PATIENT) is not Level.PATIENT for k in query.criteria
    )
    if route is Route.PATIENT_ROOT and not narrowed:
        return Level.PATIENT
    return Level.STUDY


def choose_route(
    capabilities: Capabilities, query: Query, via: str | Via = Via.AUTO, *, node: str = "node"
) -> Route:
    """Pick the route for ``query`` from the node's probed capabilities.

    Raises
    ------
    NotSupported
        The node supports no find route matching ``via``.
    """
    want = Via.parse(via)
    caps = capabilities
    if want is not Via.DICOMWEB:
        plain_patient = query.level is Level.PATIENT and ask_level(query, Route.PATIENT_ROOT) is (
            Level.PATIENT
        )
        if caps.patient_root_find and (plain_patient or not caps.study_root_find):
            return Route.PATIENT_ROOT
        if caps.study_root_find:
            return Route.STUDY_ROOT
    if want is not Via.DIMSE and caps.qido:
        return Route.QIDO
    wanted = {Via.AUTO: "C-FIND or QIDO-RS", Via.DIMSE: "C-FIND", Via.DICOMWEB: "QIDO-RS"}[want]
    raise NotSupported(node, "find", f"the node is not configured for {wanted}")


def _qido_value(keyword: str, value: str) -> str:
    # Orthanc's QIDO cannot take "^" (it does not decode %5E): match the components with
    # "*" instead; the client-side re-filter restores the exact component match.
    if keyword == "PatientName" and "^" in value:
        value = value.replace("^", "*")
        while "**" in value:
            value = value.replace("**", "*")
    return value


@lru_cache(maxsize=256)
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword  # filters.normalize only lets dictionary keywords in
    return tag, dictionary_VR(tag)


def _element(keyword: str, value: str) -> DataElement:
    # Built from cached tag and VR: Dataset.__setattr__ looks both up on every call, which
    # was a third of the query layer's own time in a batch of small queries.
    tag, vr = _tag_vr(keyword)
    return DataElement(tag, vr, value)


def identifiers(query: Query, route: Route) -> list[Dataset]:
    """The C-FIND identifiers (or QIDO search datasets) to send, one per modality.

    Empty elements are return keys; the others are matching keys.
    """
    level = ask_level(query, route)
    keys: dict[str, str] = dict.fromkeys(RETURN_KEYS[level], "")
    if level is Level.PATIENT:
        # Patient-level identifiers may only carry patient keys.
        criteria = {
            k: v for k, v in query.criteria.items() if KEYWORD_LEVEL.get(k) is Level.PATIENT
        }
    else:
        criteria = dict(query.criteria)
    for keyword, value in criteria.items():
        keys[keyword] = _qido_value(keyword, value) if route is Route.QIDO else value
    modality_key = "Modality" if level.depth >= Level.SERIES.depth else "ModalitiesInStudy"
    out = []
    for modality in query.modalities or (None,):
        ds = Dataset()
        ds.add(_element("QueryRetrieveLevel", level.value))
        for keyword, value in keys.items():
            ds.add(_element(keyword, value))
        if modality is not None:
            ds.add(_element(modality_key, modality))
        out.append(ds)
    return out
