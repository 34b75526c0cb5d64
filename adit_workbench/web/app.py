"""The workbench service: one FastAPI app over the local facade, for every client.

:func:`create_app` opens the database once, authenticates each request
(:mod:`.auth`), builds the caller's :class:`~adit_workbench.workbench.Workbench` with an
:class:`~adit_workbench.access.Access` for the authenticated user and hands it to the
route modules, which call the same facade methods a notebook calls. Live nodes are kept
per user between requests, so their association pools (the bound on concurrent
associations to a PACS) survive from one query to the next.

The OpenAPI schema is at ``{prefix}/openapi.json``. Under JupyterHub the prefix is the
service's (``/services/workbench``), since the proxy forwards the full path.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request

from ..access import Access
from ..errors import StoreError, WorkbenchError
from ..store import nodes as node_store
from ..workbench import Workbench
from .auth import COOKIE_NAME, Authenticator
from .errors import error_body, install_error_handlers

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database
    from ..store.nodes import NodeSpec

__all__ = ["Caller", "Service", "caller", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_AUTH_ATTEMPTS = 6

#: Routes that take a multipart upload; every other body must be JSON.
MULTIPART_ROUTES = (
    "/api/jobs/batch_query",
    "/api/jobs/batch_transfer",
    "/api/deid/explain",
    "/api/uploads",
)


@dataclass(frozen=True)
class Caller:
    """The authenticated user of one request and their workbench."""

    access: Access
    wb: Workbench


class Service:
    """What the routes share: settings, the database, authentication, per-user workbenches."""

    def __init__(self, settings: Settings, database: Database, hub_auth: Any = None) -> None:
        self.settings = settings
        self.database = database
        self.auth = Authenticator(database, settings, hub_auth)
        self._workbenches: dict[str, Workbench] = {}
        self._lock = threading.Lock()
        #: Serialises ``Workbench.node()`` per user: it opens and caches live nodes.
        self.node_locks: dict[str, threading.Lock] = {}
        self._guarded: dict[tuple[str, str], tuple[NodeSpec, Any]] = {}

    def workbench(self, access: Access) -> Workbench:
        """The caller's workbench (kept between requests; Access reads the database on
        every check, so nothing about the user's rights is cached in it)."""
        with self._lock:
            wb = self._workbenches.get(access.user)
            if wb is None:
                wb = self._workbenches[access.user] = Workbench(
                    self.settings, self.database, access
                )
                self.node_locks[access.user] = threading.Lock()
            return wb

    def guarded_node(self, who: Caller, name: str) -> tuple[Any, NodeSpec]:
        """The caller's guarded node ``name`` (``who.wb.node(name)``) and its stored spec.

        The first call goes through ``Workbench.node``, which refuses a node the user may not
        use; later calls re-read only the spec (a query runs on every request, and this
        saves it a second reading of the user's rights): every call on a guarded node checks
        the user's role on the node again and audits, and a changed or removed node goes
        through ``Workbench.node`` anew, which opens a new live node or refuses.
        """
        key = (who.access.user, name)
        cached = self._guarded.get(key)
        try:
            with self.database.session() as session:
                spec: NodeSpec | None = node_store.get_node(session, name)
        except WorkbenchError:
            spec = None
        if cached is not None and spec is not None and cached[0] == spec:
            return cached[1], spec
        with self.node_locks[who.access.user]:
            node = who.wb.node(name)
            if spec is not None:  # read before the check: a change in between is seen next
                self._guarded[key] = (spec, node)
            else:
                self._guarded.pop(key, None)
        return node, spec if spec is not None else who.wb.node_spec(name)

    def close(self) -> None:
        """Close every live node and the database."""
        with self._lock:
            self._guarded.clear()
            for wb in self._workbenches.values():
                wb.close()
            self._workbenches.clear()
        self.database.dispose()


def caller(request: Request) -> Caller:
    """FastAPI dependency: authenticate the request (runs in the thread pool)."""
    service: Service = request.app.state.service
    authorization, cookie = request.headers.get("authorization"), request.cookies.get(COOKIE_NAME)
    for attempt in range(_AUTH_ATTEMPTS):
        try:
            access = service.auth.access_for(authorization, cookie)
            break
        except StoreError:
            # Token checks read, then write last use and an audit row: on SQLite a writer
            # that committed in between makes that upgrade fail at once (SQLITE_BUSY, no
            # busy wait). Authentication is safe to repeat.
            if attempt == _AUTH_ATTEMPTS - 1 or not service.database.is_sqlite:
                raise
            time.sleep(0.02 * 2**attempt)
    return Caller(access, service.workbench(access))


class RequestGate:
    """ASGI middleware: body size cap (413) and content type (415) before any route runs.

    The body is read here in full (it is capped), so a chunked upload without
    Content-Length is limited as well, then replayed to the app.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE")
            or "/dicom-web/" in scope["path"]  # STOW streams its own multipart bodies
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, "TooLarge", self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, 413, "TooLarge", self._too_large())
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            path = scope["path"].rstrip("/")
            wanted = (
                "multipart/form-data" if path.endswith(MULTIPART_ROUTES) else "application/json"
            )
            if kind != wanted:
                shown = kind or "none"
                await self._refuse(send, 415, "UnsupportedMediaType", f"send {wanted}, not {shown}")
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:  # later reads wait for the real disconnect (streaming answers listen)
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the request body exceeds {self.max_bytes // 1_000_000} MB"

    @staticmethod
    async def _refuse(send: Send, status: int, code: str, message: str) -> None:
        payload = json.dumps(error_body(code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def create_app(
    settings: Settings,
    database: Database | None = None,
    *,
    prefix: str = "",
    hub_auth: Any = None,
) -> FastAPI:
    """The service app for ``settings`` (database opened and upgraded if not given).

    ``prefix`` is where the app is mounted (``/services/workbench`` under JupyterHub);
    ``hub_auth`` a :class:`jupyterhub.services.auth.HubAuth` to accept hub tokens.
    """
    from ..store import open_database
    from . import admin, deid, instances, jobs, nodes, uploads

    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    db = database if database is not None else open_database(settings)
    service = Service(settings, db, hub_auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="adit-workbench",
        summary="Query, transfer and pseudonymize DICOM studies; jobs, access and audit.",
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
    )
    app.state.service = service
    install_error_handlers(app)
    api = APIRouter(prefix=f"{prefix}/api")
    api.include_router(nodes.router)
    api.include_router(jobs.router)
    api.include_router(admin.router)
    api.include_router(deid.router)
    api.include_router(uploads.router)
    api.include_router(instances.router)
    app.include_router(api)
    app.include_router(import_module(".dicomweb", __package__).router, prefix=prefix)
    if hub_auth is not None:
        from .oauth import router as oauth_router

        app.include_router(oauth_router, prefix=prefix)
    app.add_middleware(RequestGate, max_bytes=int(settings.max_request_mb * 1_000_000))

    return app
