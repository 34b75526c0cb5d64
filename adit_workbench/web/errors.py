"""The one place that turns failures into HTTP answers: ``{"error": CODE, "message": TEXT}``.

``CODE`` is the name of the :class:`~adit_workbench.errors.WorkbenchError` subclass that
was raised (``"NotFound"``, ``"NodeAccessDenied"``, ``"BatchFileError"`` …), so that the
remote client raises the same class again. Messages are those of the exception tree,
which are written for a person and carry no PHI; pydantic's validation errors are
rewritten to name the field and the problem without echoing the value that was sent.
Nothing ever answers with a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConfigurationError,
    InputError,
    MaintenanceMode,
    NodeAccessDenied,
    NodeError,
    NotFound,
    NotSupported,
    PermissionDenied,
    StoreError,
    WorkbenchError,
)

__all__ = ["ApiError", "error_body", "install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

#: Attributes copied into the answer so that the client can rebuild the exception.
_ATTRIBUTES = ("node", "operation", "detail", "role", "permission", "status", "category",
               "http_status", "announcement", "name")  # fmt: skip


class ApiError(Exception):
    """A refusal made by the web layer itself (authentication, content type, size)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def status_for(exc: WorkbenchError) -> int:
    """The HTTP status of a workbench error (the one mapping of the service)."""
    if isinstance(exc, NodeAccessDenied) and exc.role is None:
        # Not allowed to see the node at all: answered like a node that does not exist.
        return 404
    table: Sequence[tuple[type[WorkbenchError], int]] = (
        (NotFound, 404),
        (PermissionDenied, 403),
        (MaintenanceMode, 503),
        (ConfigurationError, 503),
        (StoreError, 409),
        (InputError, 400),
        (NotSupported, 400),
        (NodeError, 502),
    )
    for cls, status in table:
        if isinstance(exc, cls):
            if cls is InputError and type(exc).__name__ == "BatchFileError":
                return 422
            return status
    return 409  # a well-formed request the current state refuses (e.g. a job that failed)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON of every error answer."""
    return {"error": code, "message": message, **extra}


def _workbench_body(exc: WorkbenchError) -> dict[str, Any]:
    if isinstance(exc, StoreError):
        # The database's own text may quote a server path or a row's values: never sent.
        log.warning("database error answered as 409 (%s)", type(exc).__name__)
        return error_body(
            "StoreError",
            "the database could not complete the operation (a conflicting change, or it "
            "is busy): try again",
            retriable=True,
        )
    extra: dict[str, Any] = {}
    attributes = {a: getattr(exc, a) for a in _ATTRIBUTES if hasattr(exc, a)}
    attributes = {k: v for k, v in attributes.items() if isinstance(v, str | int | None)}
    if attributes:
        extra["attributes"] = attributes
    rows = getattr(exc, "errors", None)
    if type(exc).__name__ == "BatchFileError" and rows is not None:
        extra["rows"] = [{"line": r.line, "column": r.column, "reason": r.reason} for r in rows]
    extra["retriable"] = bool(exc.retriable)
    return error_body(type(exc).__name__, str(exc), **extra)


def _location(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or "request"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(code, message) for pydantic errors, naming each field and never its value."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return "InvalidJSON", "the request body is not valid JSON"
    problems = []
    for e in errors[:20]:
        where = _location(e.get("loc", ()))
        kind = e.get("type", "")
        if kind == "extra_forbidden":
            problems.append(f"{where}: unknown field")
        elif kind == "missing":
            problems.append(f"{where}: required")
        else:
            text = str(e.get("msg", "invalid")).split("[")[0].strip()
            problems.append(f"{where}: {text}")
    return "ValidationError", "invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that keep every failure in the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=headers)

    @app.exception_handler(WorkbenchError)
    async def _workbench(request: Request, exc: WorkbenchError) -> JSONResponse:
        return JSONResponse(_workbench_body(exc), status_code=status_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = validation_message(exc.errors())
        return JSONResponse(error_body(code, message), 400 if code == "InvalidJSON" else 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NotFound", 405: "MethodNotAllowed"}
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such API route: {request.url.path}"
        return JSONResponse(
            error_body(codes.get(exc.status_code, "HTTPError"), message), exc.status_code
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type only: a message could carry anything, the traceback stays in the log.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("InternalError", f"internal error ({type(exc).__name__}); see the log"),
            status_code=500,
        )
