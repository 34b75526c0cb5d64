"""DICOMweb per node: QIDO-RS, WADO-RS and STOW-RS on every node the caller may use.

Each node answers under ``/dicom-web/<node>/`` twice: with ADIT's service segments
(``qidors/``, ``wadors/``, ``stowrs/``) and in the standard root layout, so that an
unchanged ``dicomweb_client.DICOMwebClient(url=".../dicom-web/<node>")`` works with its
default prefixes. Whatever the node speaks (C-FIND/QIDO, C-GET/C-MOVE/WADO, C-STORE/STOW,
a folder) the caller speaks DICOMweb.

Checks, in this order, for every request: the caller is authenticated (401); the node is
one they may see, else 404 exactly as for a node that does not exist; query and retrieve
need the node's source role, store its destination role (403); a retrieve without
``pseudonym`` (or trial parameters) needs ``transfer_unpseudonymized`` (403). Queries and
stores run through the caller's guarded node (its checks and audit rows); a retrieve
checks the same :class:`~adit_workbench.access.Access` and streams undecoded bytes from a
node of its own. Every request also leaves one ``dicomweb.*`` audit row: user, node,
level, the UIDs as keyed hashes (never in clear), count and outcome.

Pseudonymization uses the project's key and the job profile
(:func:`~adit_workbench.jobs.execute.build_pseudonymizer`), so a pseudonymized WADO
answer has the UIDs a transfer job of the same study and pseudonym writes. A QIDO answer
to a caller who may not see unpseudonymized data (or who sends ``pseudonym``) goes through
the same pseudonymizer; its Study/Series/SOP Instance UIDs are left as they are, because
they are what the caller retrieves by (the retrieved files carry keyed UIDs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..access import Outcome, Permission
from ..access.permissions import NodeRole
from ..config import BurnedInPolicy
from ..deid import BurnedInRefused, Pseudonymizer, project_key
from ..dicom.spec import FolderSpec, ServerSpec
from ..errors import (
    AssociationRejected,
    DicomStatusError,
    DicomWebError,
    InputError,
    MaintenanceMode,
    NodeAccessDenied,
    NodeError,
    NodeTimeout,
    NodeUnreachable,
    NotFound,
    WorkbenchError,
)
from ..jobs.execute import build_pseudonymizer
from .app import Caller, Service, caller
from .dicomweb_stream import (
    SpooledPart,
    fetch_method,
    iter_instances,
    media_params,
    multipart,
    pseudonymize_bytes,
    spool_multipart,
)
from .errors import error_body, status_for

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dicom-web/{node}", tags=["dicomweb"])

#: Seconds a client is asked to wait before retrying an unreachable PACS.
RETRY_AFTER = 30
#: Most QIDO results per request when the node sets no smaller cap.
MAX_RESULTS = 1000
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DA = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
_TM = re.compile(r"^(\d{2,6}(\.\d{1,6})?)?(-(\d{2,6}(\.\d{1,6})?)?)?$")
_QIDO_RESERVED = frozenset(
    {"limit", "offset", "includefield", "fuzzymatching", "pseudonym", "trial_protocol_id",
     "trial_protocol_name", "project"}
)  # fmt: skip
_WADO_PARAMS = frozenset(
    {"pseudonym", "trial_protocol_id", "trial_protocol_name", "project", "via"}
)
_DICOM_JSON = "application/dicom+json"
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


class Refusal(Exception):
    """An answer decided here: status, code, message and extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _refusal(exc: Exception) -> Refusal:
    """The HTTP answer of a failure (the DICOMweb statuses; see the module docstring)."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, NodeAccessDenied) and exc.role is None:
        return _unknown_node(exc.node)
    if isinstance(exc, WorkbenchError):
        code, message = type(exc).__name__, str(exc)
        if isinstance(exc, NodeUnreachable | NodeTimeout | AssociationRejected):
            return Refusal(503, code, message, {"Retry-After": str(RETRY_AFTER)})
        if isinstance(exc, MaintenanceMode):
            return Refusal(503, code, message, {"Retry-After": str(RETRY_AFTER)})
        if isinstance(exc, DicomWebError) and exc.http_status == 404:
            return Refusal(404, "NotFound", message)
        if isinstance(exc, NodeError) and not isinstance(exc, InputError):
            status = 400 if type(exc).__name__ == "NotSupported" else 502
            return Refusal(status, code, message)
        return Refusal(status_for(exc), code, message)
    log.exception("unexpected error in a DICOMweb request")
    return Refusal(500, "InternalError", f"internal error ({type(exc).__name__}); see the log")


def _unknown_node(name: str) -> Refusal:
    return Refusal(404, "NotFound", "no such node")


def _answer(refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        error_body(refusal.code, refusal.message), refusal.status, headers=refusal.headers
    )


# -- audit -----------------------------------------------------------------------------
class Trail:
    """The one ``dicomweb.*`` audit row of a request, written when it ends."""

    def __init__(self, who: Caller, service: Service, action: str, node: str) -> None:
        self.who = who
        self.action = action
        self.node = node
        self.details: dict[str, Any] = {}
        self._key = hmac.new(
            service.settings.master_secret(), b"adit-workbench audit reference", "sha256"
        ).digest()
        self.written = False

    def ref(self, uid: str | None) -> str | None:
        """A keyed hash of a UID: matches across rows, says nothing without the secret."""
        if not uid:
            return None
        return hmac.new(self._key, uid.encode(), hashlib.sha256).hexdigest()[:24]

    def refs(self, **uids: str | None) -> None:
        """Record the request's UIDs (hashed) under their names."""
        for name, uid in uids.items():
            if uid:
                self.details[name] = self.ref(uid)

    def close(self, error: BaseException | None = None, status: int | None = None) -> None:
        """Write the row once: ``ok``, ``denied`` (401/403/404 of access) or ``failed``."""
        if self.written:
            return
        self.written = True
        outcome = Outcome.OK
        if error is not None:
            self.details["error"] = type(error).__name__
            if status is not None:
                self.details["status"] = status
            outcome = Outcome.DENIED if status in (403, 404) else Outcome.FAILED
        try:
            self.who.access.audit(
                self.action, node=self.node, details=self.details, outcome=outcome
            )
        except Exception:  # the answer must not turn into a 500 after it was sent
            log.exception("could not write the audit row of a DICOMweb request")


def _run(trail: Trail, work: Callable[[], Response]) -> Response:
    try:
        response = work()
    except Exception as exc:
        refusal = _refusal(exc)
        trail.close(exc, refusal.status)
        return _answer(refusal)
    if not isinstance(response, StreamingResponse):
        trail.close()
    return response


# -- shared checks ---------------------------------------------------------------------
def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _spec(who: Caller, name: str) -> ServerSpec | FolderSpec:
    """The node's spec if the caller may see it; one 404 for unknown and invisible."""
    try:
        return who.wb.node_spec(name)
    except NotFound:
        raise _unknown_node(name) from None
    except NodeAccessDenied as exc:
        if exc.role is None:
            raise _unknown_node(name) from None
        raise


def _guarded(request: Request, who: Caller, name: str) -> Any:
    with _service(request).node_locks[who.access.user]:
        return who.wb.node(name)


def _uid(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if len(value) > 64 or not _UID.match(value):
        raise InputError(f"{what} is not a valid UID (digits and dots, at most 64)")
    return value


def _accepts(request: Request, *wanted: str) -> None:
    """406 unless the Accept header allows one of ``wanted`` (``multipart/related``
    means ``multipart/related; type="application/dicom"``)."""
    header = request.headers.get("accept", "").strip()
    if not header:
        return
    for item in header.split(","):
        kind, params = media_params(item)
        if kind in ("*/*", "") or kind in wanted:
            if kind != "multipart/related":
                return
            if params.get("type", "application/dicom") in ("application/dicom", "*/*", "*"):
                return
        if kind.endswith("/*") and any(w.startswith(kind[:-1]) for w in wanted):
            return
    offered = ", ".join(w + ('; type="application/dicom"' if w.startswith("multi") else "")
                        for w in wanted)  # fmt: skip
    raise Refusal(406, "NotAcceptable", f"this resource is available as {offered}")


def _text_param(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InputError(f"{name} is given more than once")
    if not values:
        return None
    value = values[0].strip()
    if len(value) > 64 or "\\" in value or not value.isprintable():
        raise InputError(f"{name} must be at most 64 printable characters without backslash")
    return value or None


def _pseudonymizer(
    request: Request, who: Caller, *, required: bool
) -> tuple[Pseudonymizer | None, dict[str, Any]]:
    """The job pseudonymizer the request's parameters ask for (and what to audit)."""
    pseudonym = _text_param(request, "pseudonym")
    trial_id = _text_param(request, "trial_protocol_id")
    trial_name = _text_param(request, "trial_protocol_name")
    project = _text_param(request, "project") or "default"
    if pseudonym is None and trial_id is None and trial_name is None and not required:
        return None, {"pseudonymized": False}
    job = {
        "pseudonymize": True,
        "deid_options": [],
        "trial_protocol_id": trial_id,
        "trial_protocol_name": trial_name,
        "project_name": project,
    }
    pz = build_pseudonymizer(_service(request).settings, job, pseudonym)
    assert pz is not None
    return pz, {"pseudonymized": True, "project": project}


# -- QIDO-RS ---------------------------------------------------------------------------
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
            _uid(uid, keyword)
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
    trail = Trail(who, _service(request), "dicomweb.qido", name)
    trail.details["level"] = level

    def work() -> Response:
        _accepts(request, _DICOM_JSON, "application/json")
        fixed = {k: v for k, v in path.items() if _uid(v, k)}
        trail.refs(**fixed)
        query, limit, offset = _qido_query(request, level, fixed)
        _spec(who, name)
        needs = not who.access.has(Permission.TRANSFER_UNPSEUDONYMIZED)
        pz, facts = _pseudonymizer(request, who, required=needs)
        if pz is not None:  # a QIDO answer carries no pixels: no burned-in guard here
            profile = dataclasses.replace(pz.profile, burned_in_policy=BurnedInPolicy.ALLOW)
            project = facts["project"]
            pz = Pseudonymizer(project_key(_service(request).settings.master_secret(), project),
                               profile)  # fmt: skip
        trail.details.update(facts)
        node = _guarded(request, who, name)
        found = []
        for i, ds in enumerate(node.find(level, query, limit=limit + offset)):
            if i >= offset:
                found.append(_qido_answer(ds, pz))
        trail.details["count"] = len(found)
        headers = {}
        if len(found) >= limit == MAX_RESULTS:
            headers["Warning"] = '299 adit-workbench "There are additional results"'
        return JSONResponse(found, media_type=_DICOM_JSON, headers=headers)

    return _run(trail, work)


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


# -- WADO-RS ---------------------------------------------------------------------------
def retrieve(request: Request, who: Caller = Depends(caller)) -> Response:
    """WADO-RS: the instances of a study, series or instance as ``multipart/related``."""
    return _wado(request, who, metadata=False)


def retrieve_metadata(request: Request, who: Caller = Depends(caller)) -> Response:
    """WADO-RS: the DICOM JSON of a study's, series' or instance's instances."""
    return _wado(request, who, metadata=True)


def _wado(request: Request, who: Caller, *, metadata: bool) -> Response:
    name = request.path_params["node"]
    service = _service(request)
    trail = Trail(who, service, "dicomweb.wado", name)
    ids = {k: request.path_params.get(k) for k in ("study", "series", "sop")}
    trail.details["level"] = "IMAGE" if ids["sop"] else "SERIES" if ids["series"] else "STUDY"
    trail.details["metadata"] = metadata

    def work() -> Response:
        if metadata:
            _accepts(request, _DICOM_JSON, "application/json")
        else:
            _accepts(request, "multipart/related")
        unknown = sorted(set(request.query_params) - _WADO_PARAMS)
        if unknown:
            raise InputError(f"unknown query parameter {unknown[0][:40]!r}")
        study, series, sop = (_uid(ids[k], k) for k in ("study", "series", "sop"))
        assert study is not None
        trail.refs(study=study, series=series, sop=sop)
        spec = _spec(who, name)
        who.access.require_node(name, NodeRole.SOURCE, action="dicomweb.wado")
        pz, facts = _pseudonymizer(request, who, required=False)
        if pz is None:
            who.access.require(Permission.TRANSFER_UNPSEUDONYMIZED, action="dicomweb.wado",
                               node=name)  # fmt: skip
        trail.details.update(facts)
        method = fetch_method(spec, service.settings, request.query_params.get("via", "auto"))
        trail.details["via"] = method
        source = iter_instances(spec, service.settings, study, series, sop, method=method)
        parts = _prepared(source, pz, service, metadata, trail)
        try:
            first = next(parts)  # failures before the first byte get their own status
        except StopIteration:
            raise Refusal(404, "NotFound", f"{name}: no such study, series or instance") from None
        except DicomStatusError:
            parts.close()
            # A PACS refuses a C-GET/C-MOVE of what it does not hold (Orthanc: 0xC000):
            # ask whether it holds it, so that an unknown study is a 404, not a 502.
            if not _holds(request, who, name, study, series, sop):
                raise Refusal(
                    404, "NotFound", f"{name}: no such study, series or instance"
                ) from None
            raise
        except BaseException:
            parts.close()
            raise
        return _streamed(first, parts, metadata, trail)

    return _run(trail, work)


def _holds(
    request: Request, who: Caller, name: str, study: str, series: str | None, sop: str | None
) -> bool:
    query = Dataset()
    query.StudyInstanceUID = study
    level = "STUDY"
    if series:
        query.SeriesInstanceUID, level = series, "SERIES"
    if sop:
        query.SOPInstanceUID, level = sop, "IMAGE"
    found = _guarded(request, who, name).find(level, query, limit=1)
    return any(True for _ in found)


def _prepared(
    source: Generator[bytes, None, None],
    pz: Pseudonymizer | None,
    service: Service,
    metadata: bool,
    trail: Trail,
) -> Generator[bytes, None, None]:
    """Each instance as it will be sent: pseudonymized, and as JSON for metadata."""
    trail.details["count"] = 0
    refused = 0
    spool = service.settings.data_dir
    try:
        for data in source:
            if pz is not None:
                try:
                    data = pseudonymize_bytes(pz, data, spool)
                except BurnedInRefused:
                    refused += 1
                    trail.details["refused"] = refused
                    continue
            trail.details["count"] += 1
            if metadata:
                yield _metadata_json(data)
            else:
                yield data
    finally:
        source.close()


def _metadata_json(data: bytes) -> bytes:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    return json.dumps(ds.to_json_dict(bulk_data_threshold=1 << 20)).encode()


def _streamed(
    first: bytes, rest: Generator[bytes, None, None], metadata: bool, trail: Trail
) -> Response:
    def chain() -> Iterator[bytes]:
        yield first
        yield from rest

    def body(framed: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from framed
        except GeneratorExit:
            trail.details["aborted"] = True
            trail.close(ConnectionAbortedError(), 499)
            raise
        except Exception as exc:
            # Too late for a status: the connection is cut without the closing
            # delimiter, so no client takes a partial answer for a whole one.
            trail.close(exc, _refusal(exc).status)
            log.warning("DICOMweb retrieve failed mid-stream: %s", type(exc).__name__)
            raise
        finally:
            rest.close()
        trail.close()

    if metadata:

        def array() -> Iterator[bytes]:
            yield b"["
            for i, item in enumerate(chain()):
                yield item if i == 0 else b"," + item
            yield b"]"

        return StreamingResponse(body(array()), media_type=_DICOM_JSON)
    boundary = secrets.token_hex(16)
    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return StreamingResponse(body(multipart(chain(), boundary)), media_type=media)


# -- STOW-RS ---------------------------------------------------------------------------
_CANNOT_UNDERSTAND = 0xC000
_PROCESSING_FAILURE = 0x0110
_STUDY_MISMATCH = 0xA900


async def store(request: Request, who: Caller = Depends(caller)) -> Response:
    """STOW-RS: store the parts of a ``multipart/related; type="application/dicom"`` body.

    Good parts are stored, bad ones reported in FailedSOPSequence (409 if any failed).
    """
    name = request.path_params["node"]
    service = _service(request)
    trail = Trail(who, service, "dicomweb.stow", name)
    study = request.path_params.get("study")
    try:
        _uid(study, "study")
        trail.refs(study=study)
        _accepts(request, _DICOM_JSON, "application/json")
        await run_in_threadpool(_spec, who, name)
        await run_in_threadpool(
            who.access.require_node, name, NodeRole.DESTINATION, action="dicomweb.stow"
        )
        kind, params = media_params(request.headers.get("content-type", ""))
        part_type = params.get("type", "application/dicom")
        if kind != "multipart/related" or part_type != "application/dicom":
            raise Refusal(415, "UnsupportedMediaType",
                          'send multipart/related; type="application/dicom"')  # fmt: skip
        if not params.get("boundary"):
            raise InputError("the multipart Content-Type has no boundary")
        service.settings.ensure_data_dir()
        folder = Path(tempfile.mkdtemp(prefix="stow-", dir=service.settings.data_dir))
        try:
            parts = await spool_multipart(request.stream(), params["boundary"], folder)
            answer, failed = await run_in_threadpool(
                _store_parts, request, who, name, study, parts, trail
            )
        finally:
            await run_in_threadpool(shutil.rmtree, folder, True)
    except Exception as exc:
        refusal = _refusal(exc)
        await run_in_threadpool(trail.close, exc, refusal.status)
        return _answer(refusal)
    await run_in_threadpool(trail.close)
    return JSONResponse(answer.to_json_dict(), 409 if failed else 200, media_type=_DICOM_JSON)


def _store_parts(
    request: Request,
    who: Caller,
    name: str,
    study: str | None,
    parts: list[SpooledPart],
    trail: Trail,
) -> tuple[Dataset, int]:
    """Check each part, store the good ones through the guarded node, build the answer."""
    failed = Sequence()
    good: list[str] = []
    headers: dict[str, Dataset] = {}
    for part in parts:
        header = _read_part(part)
        if header is None:
            failed.append(_failed_item(None, _CANNOT_UNDERSTAND))
        elif study and str(header.get("StudyInstanceUID", "")) != study:
            failed.append(_failed_item(header, _STUDY_MISMATCH))
        else:
            headers[str(header.SOPInstanceUID)] = header
            good.append(str(part.path))
    trail.details.update(parts=len(parts), bad_parts=len(failed))
    referenced = Sequence()
    if good:
        result = _guarded(request, who, name).store(_items(good))
        for uid, header in headers.items():
            if uid in result.failed:
                failed.append(_failed_item(header, _PROCESSING_FAILURE))
            else:
                referenced.append(_referenced_item(request, header))
    trail.details.update(stored=len(referenced), failed=len(failed))
    answer = Dataset()
    if study:
        answer.RetrieveURL = _study_url(request, study)
    answer.ReferencedSOPSequence = referenced
    if failed:
        answer.FailedSOPSequence = failed
    return answer, len(failed)


def _read_part(part: SpooledPart) -> Dataset | None:
    """The header of a part that is a DICOM instance with its UIDs, else None."""
    kind = media_params(part.content_type)[0] if part.content_type else ""
    if kind not in ("", "application/dicom"):
        return None
    try:
        header = dcmread(part.path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    if not (header.get("SOPInstanceUID") and header.get("SOPClassUID")):
        return None
    return header


def _items(paths: list[str]) -> Iterator[str | Dataset]:
    """What to store: a Part-10 file as its path (sent undecoded), a bare dataset (no
    preamble, as dicomweb-client sends) read and given file meta, one at a time."""
    for path in paths:
        with open(path, "rb") as handle:
            handle.seek(128)
            if handle.read(4) == b"DICM":
                yield path
                continue
        ds = dcmread(path, force=True)
        meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        if "TransferSyntaxUID" not in meta:
            implicit, little = ds.original_encoding
            meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian
                if implicit
                else ExplicitVRLittleEndian
                if little
                else ExplicitVRBigEndian
            )
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta = meta
        yield ds


def _failed_item(header: Dataset | None, reason: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = str(header.get("SOPClassUID", "")) if header else ""
    item.ReferencedSOPInstanceUID = str(header.get("SOPInstanceUID", "")) if header else ""
    item.FailureReason = reason
    return item


def _referenced_item(request: Request, header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = str(header.SOPClassUID)
    item.ReferencedSOPInstanceUID = str(header.SOPInstanceUID)
    study = str(header.get("StudyInstanceUID", ""))
    series = str(header.get("SeriesInstanceUID", ""))
    item.RetrieveURL = (
        f"{_study_url(request, study)}/series/{series}/instances/{header.SOPInstanceUID}"
    )
    return item


def _study_url(request: Request, study: str) -> str:
    path = request.url.path
    root = path[: path.index("/dicom-web/")] + f"/dicom-web/{request.path_params['node']}"
    return f"{str(request.base_url).rstrip('/')}{root}/studies/{study}"


# -- routes: ADIT's service segments and the standard root layout ---------------------
_STUDY = "/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{sop}"

for _segment in ("/qidors", ""):
    router.add_api_route(_segment + "/studies", search_studies, methods=["GET"])
    router.add_api_route(_segment + "/series", search_series, methods=["GET"])
    router.add_api_route(_segment + "/instances", search_instances, methods=["GET"])
    router.add_api_route(_segment + _STUDY + "/series", search_series, methods=["GET"])
    router.add_api_route(_segment + _STUDY + "/instances", search_instances, methods=["GET"])
    router.add_api_route(_segment + _SERIES + "/instances", search_instances, methods=["GET"])
for _segment in ("/wadors", ""):
    for _resource in (_STUDY, _SERIES, _INSTANCE):
        router.add_api_route(_segment + _resource, retrieve, methods=["GET"])
        router.add_api_route(_segment + _resource + "/metadata", retrieve_metadata,
                             methods=["GET"])  # fmt: skip
for _segment in ("/stowrs", ""):
    router.add_api_route(_segment + "/studies", store, methods=["POST"])
    router.add_api_route(_segment + _STUDY, store, methods=["POST"])
