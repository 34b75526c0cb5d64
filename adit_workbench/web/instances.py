"""Instances into a notebook over the service: what ``series.datasets()``, ``volume()``,
``thumbnail()`` and ``study.preview()`` of a remote workbench read.

``GET /api/nodes/{node}/studies/{study}[/series/{series}[/instances/{sop}]]`` streams the
Part-10 files as ``multipart/related`` (one instance in memory at a time, the client's
pace is the PACS's), through the very code of the DICOMweb WADO-RS route
(:mod:`.dicomweb_wado`): the same 404 for a node the caller may not see (with the
``/api`` error codes), the source role
on the node, the same fetch (C-GET, WADO-RS, C-MOVE or folder) and the same
pseudonymization engine a transfer job of the project applies. What differs is the rule
for originals, which follows the notebook API rather than DICOMweb's parameters:

* ``pseudonym=`` or ``project=`` (or a trial protocol) ask for pseudonymized instances,
  with the project's key (``project`` alone: the pseudonym a job of that project would
  derive for the patient);
* without them the originals are sent, but only to a user with the
  ``transfer_unpseudonymized`` permission; anyone else gets them pseudonymized as a job
  of the ``default`` project would (as a transfer job of theirs is), and the answer says
  so in the ``X-Workbench-Pseudonymized`` header (the client warns). So
  ``series.thumbnail()`` works for every user with the source role, as it does on the
  embedded workbench, and originals still never leave without the permission.

Every request writes one ``instances.retrieve`` audit row (UIDs as keyed hashes).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ..access import Permission
from ..access.permissions import NodeRole
from ..errors import InputError, WorkbenchError
from .app import Caller, caller
from .dicomweb_common import (
    Trail,
    check_uid,
    error_response,
    pseudonymizer_for,
    refusal_for,
    service_of,
    text_param,
)
from .dicomweb_stream import fetch_method, iter_instances, iter_study
from .dicomweb_wado import _first_part, _prepared, _streamed
from .errors import _workbench_body, status_for

__all__ = ["PSEUDONYMIZED_HEADER", "router"]

router = APIRouter(prefix="/nodes", tags=["instances"])

_PARAMS = frozenset({"pseudonym", "project", "trial_protocol_id", "trial_protocol_name", "via"})
_ASKS_PSEUDONYMS = ("pseudonym", "project", "trial_protocol_id", "trial_protocol_name")
_ACTION = "instances.retrieve"
#: Set on a pseudonymized answer: ``asked`` (parameters) or ``imposed`` (no permission).
PSEUDONYMIZED_HEADER = "X-Workbench-Pseudonymized"


@router.get("/{node}/studies/{study}", response_class=Response)
def study_instances(request: Request, who: Caller = Depends(caller)) -> Response:
    """Every instance of a study, as ``multipart/related`` Part-10 files."""
    return _retrieve(request, who)


@router.get("/{node}/studies/{study}/series/{series}", response_class=Response)
def series_instances(request: Request, who: Caller = Depends(caller)) -> Response:
    """Every instance of a series, as ``multipart/related`` Part-10 files."""
    return _retrieve(request, who)


@router.get("/{node}/studies/{study}/series/{series}/instances/{sop}", response_class=Response)
def one_instance(request: Request, who: Caller = Depends(caller)) -> Response:
    """One instance, as a ``multipart/related`` answer of one part."""
    return _retrieve(request, who)


def _retrieve(request: Request, who: Caller) -> Response:
    name = request.path_params["node"]
    service = service_of(request)
    trail = Trail(who, service, _ACTION, name)
    ids = {k: request.path_params.get(k) for k in ("study", "series", "sop")}
    trail.details["level"] = "IMAGE" if ids["sop"] else "SERIES" if ids["series"] else "STUDY"

    def work() -> Response:
        unknown = sorted(set(request.query_params) - _PARAMS)
        if unknown:
            raise InputError(f"unknown query parameter {unknown[0][:40]!r}")
        study, series, sop = (check_uid(ids[k], k) for k in ("study", "series", "sop"))
        assert study is not None
        trail.refs(study=study, series=series, sop=sop)
        spec = who.wb.node_spec(name)  # NodeAccessDenied (404) as in every /api route
        who.access.require_node(name, NodeRole.SOURCE, action=_ACTION)
        asked = any(text_param(request, k) for k in _ASKS_PSEUDONYMS)
        imposed = not asked and not who.access.has(Permission.TRANSFER_UNPSEUDONYMIZED)
        pz, facts = pseudonymizer_for(request, who, required=asked or imposed)
        trail.details.update(facts, imposed=imposed)
        method = fetch_method(spec, service.settings, request.query_params.get("via", "auto"))
        trail.details["via"] = method
        if series is None:
            source = iter_study(spec, service.settings, study, method=method)
        else:
            source = iter_instances(spec, service.settings, study, series, sop, method=method)
        parts = _prepared(source, pz, service, False, trail)
        first = _first_part(parts, request, who, name, study, series, sop)
        response = _streamed(first, parts, False, trail)
        if pz is not None:
            response.headers[PSEUDONYMIZED_HEADER] = "imposed" if imposed else "asked"
        return response

    try:
        return work()  # a streamed answer writes its audit row when it has been sent
    except WorkbenchError as exc:
        # The /api error shape (the class name as code), so the client raises the same
        # class a local workbench raises (NodeAccessDenied, not DICOMweb's NotFound).
        status = status_for(exc)
        trail.close(exc, status)
        return JSONResponse(_workbench_body(exc), status_code=status)
    except Exception as exc:
        refusal = refusal_for(exc)
        trail.close(exc, refusal.status)
        return error_response(refusal)
