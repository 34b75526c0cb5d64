"""Routes for nodes and queries: ``/api/nodes``, ``/api/nodes/{name}/query`` …

A query runs the facade's ``find_<level>`` (or ``iter_<level>`` when streamed) on the
caller's guarded node, so it is checked and audited exactly as in a notebook. Results are
sent as the DICOM JSON of the identifiers the node answered with: the client rebuilds the
same typed :mod:`~adit_workbench.dicom.results` objects from them. A streamed answer is
NDJSON, one ``{"identifier": …}`` per line and a last line ``{"end": true, "truncated": …}``
(or ``{"error": …}`` when the node failed part-way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydicom import Dataset
from pydicom.multival import MultiValue

from ..dicom.results import Results, _Result
from ..dicom.spec import Capabilities, FolderSpec, ServerSpec
from ..errors import InputError, WorkbenchError
from ..store.nodes import NodeSpec
from .app import Caller, Service, caller
from .models import AddNodeRequest, FindRequest, QueryRequest

__all__ = ["TEXT_VRS", "describe_node", "identifier_json", "router"]

router = APIRouter(prefix="/nodes", tags=["nodes"])

NodeName = Annotated[str, Path(max_length=64)]
_PLURAL = {"patient": "patients", "study": "studies", "series": "series", "instance": "instances"}
_JSON = "application/json"
_RESERVED = frozenset({"limit", "via", "level", "root", "stream"})


def describe_node(spec: ServerSpec | FolderSpec) -> dict[str, Any]:
    """A node as clients see it: no credentials, no server-side paths."""
    if isinstance(spec, FolderSpec):
        return {"name": spec.name, "kind": "folder", "quota_gb": spec.quota_gb}
    return {
        "name": spec.name,
        "kind": "server",
        "ae_title": spec.ae_title,
        "host": spec.host,
        "port": spec.port,
        "dicomweb": spec.dicomweb_root_url is not None,
        "capabilities": _capabilities(spec.capabilities),
        "max_search_results": spec.max_search_results,
        "max_associations": spec.max_associations,
    }


def _capabilities(caps: Capabilities) -> dict[str, Any]:
    return {
        **caps.as_flags(),
        "probed_at": caps.probed_at.isoformat() if caps.probed_at else None,
        "details": dict(caps.details),
    }


def _guarded(request: Request, who: Caller, name: str) -> tuple[Any, NodeSpec]:
    service: Service = request.app.state.service
    return service.guarded_node(who, name)


#: Value representations whose DICOM JSON value is the text itself (PN, numbers and
#: binary ones are not): most of a query answer.
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI",
                      "UR", "UT"})  # fmt: skip


def identifier_json(ds: Dataset) -> dict[str, Any]:
    """``ds.to_json_dict()``, the same DICOM JSON, with text elements written directly.

    pydicom's encoder spends about 0.2 ms per element on checks a text value does not
    need; with two studies per query that was more than the C-FIND itself. Every other
    element (names, numbers, sequences, binary values) is pydicom's own encoding.
    """
    out: dict[str, Any] = {}
    for tag in ds.keys():  # noqa: SIM118 (a Dataset iterates elements, sorted; this is to_json_dict's order)
        element = ds[tag]
        vr, value = element.VR, element.value
        if vr in TEXT_VRS:
            if value is None or (isinstance(value, str) and not value):
                out[f"{tag:08X}"] = {"vr": vr}
                continue
            if isinstance(value, str):
                out[f"{tag:08X}"] = {"vr": vr, "Value": [value]}
                continue
            if (isinstance(value, MultiValue) and len(value) > 1
                    and all(isinstance(v, str) for v in value)):  # fmt: skip
                out[f"{tag:08X}"] = {"vr": vr, "Value": list(value)}
                continue
        out[f"{tag:08X}"] = element.to_json_dict(None, 1024)
    return out


def _item(result: _Result) -> dict[str, Any]:
    return {"identifier": identifier_json(result.identifier)}


def _line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, default=str, separators=(",", ":")).encode() + b"\n"


def _error_line(exc: Exception) -> bytes:
    if isinstance(exc, WorkbenchError):
        return _line({"error": type(exc).__name__, "message": str(exc)})
    return _line({"error": "InternalError", "message": f"internal error ({type(exc).__name__})"})


@router.get("")
def list_nodes(who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    """The nodes the caller may use."""
    return [describe_node(spec) for spec in who.wb.node_specs()]


@router.post("", status_code=201)
def add_node(body: AddNodeRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Register a server or a folder (admins)."""
    if body.kind == "folder":
        if not body.path:
            raise InputError("a folder node needs 'path'")
        return describe_node(who.wb.add_folder(body.name, body.path))
    if not body.ae_title or not body.host or not body.port:
        raise InputError("a server node needs 'ae_title', 'host' and 'port'")
    extra: dict[str, Any] = {}
    if body.max_search_results is not None:
        extra["max_search_results"] = body.max_search_results
    if body.max_associations is not None:
        extra["max_associations"] = body.max_associations
    spec = who.wb.add_server(
        body.name,
        ae_title=body.ae_title,
        host=body.host,
        port=body.port,
        dicomweb_url=body.dicomweb_url,
        **extra,
    )
    return describe_node(spec)


@router.get("/{name}")
def show_node(name: NodeName, who: Caller = Depends(caller)) -> dict[str, Any]:
    """One node (404 when it does not exist or the caller may not use it)."""
    return describe_node(who.wb.node_spec(name))


@router.delete("/{name}", status_code=204)
def remove_node(name: NodeName, who: Caller = Depends(caller)) -> Response:
    """Unregister a node (admins)."""
    who.wb.remove_node(name)
    return Response(status_code=204)


@router.post("/{name}/echo")
def echo(name: NodeName, who: Caller = Depends(caller)) -> dict[str, Any]:
    """C-ECHO (or its equivalent); 502 with the reason when the node fails."""
    who.wb.echo(name)
    return {"node": name, "ok": True}


@router.post("/{name}/probe")
def probe(name: NodeName, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Measure and store what the node supports (admins)."""
    return _capabilities(who.wb.probe(name))


@router.post("/{name}/query", response_model=None)
def query(
    name: NodeName, body: QueryRequest, request: Request, who: Caller = Depends(caller)
) -> Response:
    """``find_<level>`` with the notebook's filters and limit; NDJSON when ``stream``."""
    bad = sorted(_RESERVED & body.filters.keys())
    if bad:
        raise InputError(f"{', '.join(bad)} is not a filter: give it beside 'filters'")
    node, _ = _guarded(request, who, name)
    plural = _PLURAL[body.level]
    filters = {k: tuple(v) if isinstance(v, list) else v for k, v in body.filters.items()}
    try:
        if not body.stream:
            found: Results[Any] = getattr(node, f"find_{plural}")(
                limit=body.limit, via=body.via, **filters
            )
            payload = {
                "node": name,
                "level": body.level,
                "route": found.route,
                "limit": found.limit,
                "truncated": found.truncated,
                "count": len(found),
                "items": [_item(r) for r in found],
            }
            # Encoded here: FastAPI's generic encoder walks every DICOM JSON value again.
            return Response(json.dumps(payload, separators=(",", ":")), media_type=_JSON)
        stream = getattr(node, f"iter_{plural}")(limit=body.limit, via=body.via, **filters)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, WorkbenchError):
            raise
        raise InputError("a filter value has the wrong type") from None

    def lines() -> Iterator[bytes]:
        count = 0
        try:
            for result in stream:
                count += 1
                yield _line(_item(result))
        except Exception as exc:
            yield _error_line(exc)
            return
        finally:
            stream.close()
        yield _line({"end": True, "count": count, "truncated": stream.truncated,
                     "limit": stream.limit, "route": str(stream.route)})  # fmt: skip

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/{name}/find")
def find(
    name: NodeName, body: FindRequest, request: Request, who: Caller = Depends(caller)
) -> StreamingResponse:
    """One raw find with a DICOM JSON identifier (what result navigation uses); NDJSON."""
    try:
        identifier = Dataset.from_json(body.identifier)
    except Exception:
        raise InputError("identifier is not a DICOM JSON dataset") from None
    node, spec = _guarded(request, who, name)
    # The node's cap holds here too: a raw find must not list a whole PACS. One answer
    # more than the cap is what tells the client's query code that it was truncated.
    service: Service = request.app.state.service
    cap = (
        spec.max_search_results
        if isinstance(spec, ServerSpec)
        else service.settings.max_search_results
    ) + 1
    limit = min(body.limit or cap, cap)
    answers = node.find(body.level, identifier, limit=limit, root=body.root)

    def lines() -> Iterator[bytes]:
        try:
            for ds in answers:
                yield _line({"identifier": identifier_json(ds)})
        except Exception as exc:
            yield _error_line(exc)
            return
        finally:
            close = getattr(answers, "close", None)
            if close is not None:
                close()
        yield _line({"end": True})

    return StreamingResponse(lines(), media_type="application/x-ndjson")
