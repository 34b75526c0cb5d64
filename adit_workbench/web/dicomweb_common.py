"""What every DICOMweb route shares: refusals and their statuses, the audit row, the
node and permission checks (see :mod:`.dicomweb` for the rules they implement)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ..access import Outcome
from ..deid import Pseudonymizer
from ..dicom.spec import FolderSpec, ServerSpec
from ..errors import (
    AssociationRejected,
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
from .app import Caller, Service
from .dicomweb_stream import media_params
from .errors import error_body, status_for

log = logging.getLogger(__name__)

__all__ = [
    "DICOM_JSON",
    "RETRY_AFTER",
    "UID_PATTERN",
    "Refusal",
    "Trail",
    "accepted_syntaxes",
    "accepts",
    "check_uid",
    "error_response",
    "guarded",
    "node_spec",
    "pseudonymizer_for",
    "refusal_for",
    "run",
    "service_of",
    "text_param",
    "unknown_node",
]


#: Seconds a client is asked to wait before retrying an unreachable PACS.
RETRY_AFTER = 30
#: The media type of DICOM JSON answers.
DICOM_JSON = "application/dicom+json"
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class Refusal(Exception):
    """An answer decided here: status, code, message and extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def refusal_for(exc: Exception) -> Refusal:
    """The HTTP answer of a failure (the DICOMweb statuses; see the module docstring)."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, NodeAccessDenied) and exc.role is None:
        return unknown_node(exc.node)
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


def unknown_node(name: str) -> Refusal:
    return Refusal(404, "NotFound", "no such node")


def error_response(refusal: Refusal) -> JSONResponse:
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


def run(trail: Trail, work: Callable[[], Response]) -> Response:
    try:
        response = work()
    except Exception as exc:
        refusal = refusal_for(exc)
        trail.close(exc, refusal.status)
        return error_response(refusal)
    if not isinstance(response, StreamingResponse):
        trail.close()
    return response


# -- shared checks ---------------------------------------------------------------------
def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def node_spec(who: Caller, name: str) -> ServerSpec | FolderSpec:
    """The node's spec if the caller may see it; one 404 for unknown and invisible."""
    try:
        return who.wb.node_spec(name)
    except NotFound:
        raise unknown_node(name) from None
    except NodeAccessDenied as exc:
        if exc.role is None:
            raise unknown_node(name) from None
        raise


def guarded(request: Request, who: Caller, name: str) -> Any:
    with service_of(request).node_locks[who.access.user]:
        return who.wb.node(name)


def check_uid(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if len(value) > 64 or not UID_PATTERN.match(value):
        raise InputError(f"{what} is not a valid UID (digits and dots, at most 64)")
    return value


def accepts(request: Request, *wanted: str) -> None:
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


def accepted_syntaxes(request: Request) -> frozenset[str] | None:
    """The transfer syntaxes the Accept header names for ``application/dicom`` parts;
    None when any will do (no Accept, a wildcard, no ``transfer-syntax`` or ``*``).

    The service sends instances as stored (it does not transcode): a caller who names
    syntaxes gets those or a 406.
    """
    header = request.headers.get("accept", "").strip()
    named: set[str] = set()
    for item in header.split(",") if header else ():
        kind, params = media_params(item)
        if kind in ("*/*", "multipart/*", ""):
            return None
        if kind != "multipart/related":
            continue
        if params.get("type", "application/dicom") not in ("application/dicom", "*/*", "*"):
            continue
        syntax = params.get("transfer-syntax")
        if syntax is None or syntax == "*":
            return None
        named.add(syntax)
    return frozenset(named) if named else None


def text_param(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InputError(f"{name} is given more than once")
    if not values:
        return None
    value = values[0].strip()
    if len(value) > 64 or "\\" in value or not value.isprintable():
        raise InputError(f"{name} must be at most 64 printable characters without backslash")
    return value or None


def pseudonymizer_for(
    request: Request, who: Caller, *, required: bool
) -> tuple[Pseudonymizer | None, dict[str, Any]]:
    """The job pseudonymizer the request's parameters ask for (and what to audit)."""
    pseudonym = text_param(request, "pseudonym")
    trial_id = text_param(request, "trial_protocol_id")
    trial_name = text_param(request, "trial_protocol_name")
    project = text_param(request, "project") or "default"
    if pseudonym is None and trial_id is None and trial_name is None and not required:
        return None, {"pseudonymized": False}
    job = {
        "pseudonymize": True,
        "deid_options": [],
        "trial_protocol_id": trial_id,
        "trial_protocol_name": trial_name,
        "project_name": project,
    }
    pz = build_pseudonymizer(service_of(request).settings, job, pseudonym)
    assert pz is not None
    return pz, {"pseudonymized": True, "project": project}
