"""QIDO-RS on a node: DICOMweb search parameters to a C-FIND-style identifier, answered
through the caller's guarded node (C-FIND, QIDO-RS or a folder)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from ..access import Permission
from ..config import BurnedInPolicy
from ..deid import Pseudonymizer, project_key
from ..errors import InputError
from .app import Caller, caller
from .dicomweb_common import (
    DICOM_JSON,
    Trail,
    accepts,
    check_uid,
    guarded,
    node_spec,
    pseudonymizer_for,
    run,
    service_of,
)

__all__ = ["search_instances", "search_series", "search_studies"]

#: Most QIDO results per request when the node sets no smaller cap.
MAX_RESULTS = 1000
_DA = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
_TM = re.compile(r"^(\d{2,6}(\.\d{1,6})?)?(-(\d{2,6}(\.\d{1,6})?)?)?$")
_QIDO_RESERVED = frozenset(
    {"limit", "offset", "includefield", "fuzzymatching", "pseudonym", "trial_protocol_id",
     "trial_protocol_name", "project"}
)  # fmt: skip
_RETURN_KEYS = {
    "STUDY": (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
        "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
        "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "StudyInstanceUID", "Modality", "SeriesDescription", "SeriesNumber",
        "SeriesInstanceUID", "NumberOfSeriesRelatedInstances", "SeriesDate", "SeriesTime",
    ),
    "IMAGE": (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID",
        "InstanceNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
    ),
}  # fmt: skip
#: The resource UIDs a QIDO answer keeps (they are what the caller retrieves by).
_HANDLES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def _qido_query(request: Request, level: str, fixed: dict[str, str]) -> tuple[Dataset, int, int]:
    """The C-FIND-style identifier, limit and offset of a QIDO request (400 when bad)."""
    query = Dataset()
    includes: list[str] = []
    limit, offset = MAX_RESULTS, 0
    for name, value in request.query_params.multi_items():
        if name in _QIDO_RESERVED:
            if name in ("limit", "offset"):
                if not value.isdigit() or len(value) > 9:
                    raise InputError(f"{name} must be a whole number >= 0")
                if name == "limit":
                    limit = min(int(value), MAX_RESULTS) or MAX_RESULTS
                else:
                    offset = int(value)
            elif name == "includefield":
                includes += [v.strip() for v in value.split(",") if v.strip()]
            continue
        keyword = _keyword(name)
        vr = dictionary_VR(keyword)
        if vr == "SQ":
            raise InputError(f"{keyword}: sequence matching is not supported")
        _check_value(keyword, vr, value)
        setattr(query, keyword, value.split(",") if vr == "UI" and "," in value else value)
    for keyword, value in fixed.items():
        setattr(query, keyword, value)
    wanted = list(_RETURN_KEYS[level])
    for item in includes:
        if item.lower() == "all":
            wanted += [k for keys in _RETURN_KEYS.values() for k in keys]
            continue
        wanted.append(_keyword(item))
    for keyword in wanted:
        if keyword not in query and dictionary_VR(keyword) != "SQ":
            setattr(query, keyword, None)
    return query, limit, offset


def _keyword(name: str) -> str:
    """A DICOM keyword from a QIDO parameter (keyword or 8 hex digits); 400 otherwise."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        keyword = keyword_for_tag(int(name, 16))
        if keyword:
            return keyword
    elif tag_for_keyword(name) is not None:
        return name
    raise InputError(f"unknown query parameter {name[:40]!r}: not a DICOM keyword or tag")


def _check_value(keyword: str, vr: str, value: str) -> None:
    if len(value) > 1024:
        raise InputError(f"{keyword}: value too long")
    if vr == "UI":
        for uid in value.split(","):
            check_uid(uid, keyword)
    elif vr == "DA" and not _DA.match(value):
        raise InputError(f"{keyword}: use YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    elif vr == "TM" and not _TM.match(value):
        raise InputError(f"{keyword}: use HHMMSS or a range HHMMSS-HHMMSS")


def _qido_answer(ds: Dataset, pz: Pseudonymizer | None) -> dict[str, Any]:
    if "QueryRetrieveLevel" in ds:
        del ds.QueryRetrieveLevel
    if pz is not None:
        handles = {k: ds[k].value for k in _HANDLES if k in ds}
        pz(ds)
        for keyword, value in handles.items():
            setattr(ds, keyword, value)
        ds.preamble = None
    return ds.to_json_dict()


def _qido(request: Request, who: Caller, level: str, **path: str) -> Response:
    name = request.path_params["node"]
    trail = Trail(who, service_of(request), "dicomweb.qido", name)
    trail.details["level"] = level

    def work() -> Response:
        accepts(request, DICOM_JSON, "application/json")
        fixed = {k: v for k, v in path.items() if check_uid(v, k)}
        trail.refs(**fixed)
        query, limit, offset = _qido_query(request, level, fixed)
        node_spec(who, name)
        needs = not who.access.has(Permission.TRANSFER_UNPSEUDONYMIZED)
        pz, facts = pseudonymizer_for(request, who, required=needs)
        if pz is not None:  # a QIDO answer carries no pixels: no burned-in guard here
            profile = dataclasses.replace(pz.profile, burned_in_policy=BurnedInPolicy.ALLOW)
            project = facts["project"]
            pz = Pseudonymizer(project_key(service_of(request).settings.master_secret(), project),
                               profile)  # fmt: skip
        trail.details.update(facts)
        node = guarded(request, who, name)
        found = []
        for i, ds in enumerate(node.find(level, query, limit=limit + offset)):
            if i >= offset:
                found.append(_qido_answer(ds, pz))
        trail.details["count"] = len(found)
        headers = {}
        if len(found) >= limit == MAX_RESULTS:
            headers["Warning"] = '299 adit-workbench "There are additional results"'
        return JSONResponse(found, media_type=DICOM_JSON, headers=headers)

    return run(trail, work)


def search_studies(request: Request, who: Caller = Depends(caller)) -> Response:
    """QIDO-RS: studies."""
    return _qido(request, who, "STUDY")


def search_series(request: Request, who: Caller = Depends(caller)) -> Response:
    """QIDO-RS: series (of every study, or of one)."""
    return _qido(request, who, "SERIES", **_path(request, "StudyInstanceUID"))


def search_instances(request: Request, who: Caller = Depends(caller)) -> Response:
    """QIDO-RS: instances (of every study, one study, or one series)."""
    ids = _path(request, "StudyInstanceUID", "SeriesInstanceUID")
    return _qido(request, who, "IMAGE", **ids)


def _path(request: Request, *keywords: str) -> dict[str, str]:
    names = {"StudyInstanceUID": "study", "SeriesInstanceUID": "series", "SOPInstanceUID": "sop"}
    return {k: request.path_params[names[k]] for k in keywords if names[k] in request.path_params}
