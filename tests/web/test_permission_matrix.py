"""Every route of the service against every kind of caller, from one table.

Callers: anonymous, an expired token, a revoked token, a user without the permission
(nina: node access, no job or admin permission), a user without node access (olga: job
permissions, no node), staff (sam) and admin (boss). A route of the app without a row in
:data:`MATRIX` fails :func:`test_every_route_has_a_row`, so a new route cannot ship
without its expected answers.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.routing import APIRoute

from adit_workbench.dicom.spec import FolderSpec
from adit_workbench.jobs import defaults as job_defaults
from adit_workbench.store import nodes as node_store
from adit_workbench.web.app import create_app
from tests.web.conftest import People, Running, dicom_bytes, finished_job, finished_task

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

USERS = ("nina", "olga", "sam", "boss")
UNAUTHENTICATED = ("anonymous", "expired", "revoked")
_names = itertools.count(1)


@dataclass
class Context:
    people: People
    tmp: Path
    group: str = "matrix-group"


Setup = Callable[[Context], dict[str, Any]]


@dataclass(frozen=True)
class Row:
    """One route: the request, and the status each authenticated caller gets.

    ``expect`` lists nina, olga, sam, boss; unauthenticated callers get 401 unless
    ``public``. ``setup`` makes fresh things (a job, a token, a node) for each request.
    """

    method: str
    path: str
    expect: tuple[int, int, int, int]
    json: Any = None
    files: Callable[[], dict[str, Any]] | None = None
    form: dict[str, str] | None = None
    setup: Setup | None = None
    public: bool = False
    fill: dict[str, str] = field(default_factory=dict)


def _job(ctx: Context) -> dict[str, Any]:
    return {"job_id": finished_job(ctx.people.database), "action": "cancel"}


def _task(ctx: Context) -> dict[str, Any]:
    return {"task_id": finished_task(ctx.people.database)}


def _token(ctx: Context) -> dict[str, Any]:
    return {"token_id": ctx.people.admin.tokens.create(expires=1).info.id}


def _new_folder(ctx: Context) -> dict[str, Any]:
    name = f"TMP{next(_names)}"
    with ctx.people.database.session() as session:
        node_store.add_folder(session, FolderSpec(name, ctx.tmp))
    return {"name": name}


def _granted(ctx: Context) -> dict[str, Any]:
    ctx.people.admin.admin.grant(ctx.group, "OTHER", source=True)
    return {"group": ctx.group, "node": "OTHER"}


def _group(ctx: Context) -> dict[str, Any]:
    return {"group": ctx.group, "node": "OTHER", "permission": "explorer"}


def _body_folder(ctx: Context) -> dict[str, Any]:
    return {"name": f"NEW{next(_names)}", "kind": "folder", "path": str(ctx.tmp)}


def _sandbox_uids(ctx: Context) -> dict[str, Any]:
    from adit_workbench.config import get_settings
    from adit_workbench.workbench import Workbench

    wb = Workbench(get_settings(), ctx.people.database, ctx.people.admin)
    try:
        series = wb.node("SANDBOX").find_studies(patient_id="SYN0001")[0].series()[0]
        sop = series.instances()[0].sop_instance_uid
    finally:
        wb.close()
    return {"node": "SANDBOX", "study": series.study_uid, "series": series.series_uid,
            "sop": sop}  # fmt: skip


OK4 = (200, 200, 200, 200)
ADMIN_ONLY = (403, 403, 403, 200)
SANDBOX = {"name": "SANDBOX"}
BATCH_QUERY_CSV = b"PatientID,Modality\nSYN0001,CT\n"
BATCH_TRANSFER_CSV = b"PatientID,StudyInstanceUID,Pseudonym\nSYN0001,1.2.3.4,P1\n"

MATRIX: list[Row] = [
    Row("GET", "/api/health", OK4, public=True),
    Row("GET", "/openapi.json", OK4, public=True),
    Row("GET", "/docs", OK4, public=True),
    Row("GET", "/api/me", OK4),
    Row("GET", "/api/site", OK4),
    Row("GET", "/api/uploads", OK4),
    Row("POST", "/api/uploads", (403, 403, 403, 200),
        files=lambda: {"files": ("x.dcm", dicom_bytes())},
        form={"params": json.dumps({"destination": "OUT", "pseudonym": "M"})}),
    Row("GET", "/api/nodes", OK4),
    Row("POST", "/api/nodes", (403, 403, 403, 201), json=_body_folder),
    Row("GET", "/api/nodes/{name}", (200, 404, 200, 200), fill=SANDBOX),
    Row("DELETE", "/api/nodes/{name}", (403, 403, 403, 204), setup=_new_folder),
    Row("POST", "/api/nodes/{name}/echo", (200, 404, 200, 200), fill=SANDBOX),
    Row("POST", "/api/nodes/{name}/probe", ADMIN_ONLY, fill=SANDBOX),
    Row("POST", "/api/nodes/{name}/query", (200, 404, 200, 200), fill=SANDBOX,
        json={"filters": {"patient_id": "SYN0001"}}),
    Row("POST", "/api/nodes/{name}/find", (200, 404, 200, 200), fill=SANDBOX,
        json={"level": "STUDY", "identifier": {}}),
    Row("GET", "/api/nodes/{node}/studies/{study}", (200, 404, 200, 200), setup=_sandbox_uids),
    Row("GET", "/api/nodes/{node}/studies/{study}/series/{series}", (200, 404, 200, 200),
        setup=_sandbox_uids),
    Row("GET", "/api/nodes/{node}/studies/{study}/series/{series}/instances/{sop}",
        (200, 404, 200, 200), setup=_sandbox_uids),
    Row("GET", "/api/jobs", OK4),
    Row("GET", "/api/jobs/modalities", OK4),  # other users' ids: tests/widgets/test_charts.py
    Row("POST", "/api/jobs/transfer", (403, 403, 201, 201),
        json={"source": "SANDBOX", "to": "OUT", "studies": ["1.2.3.4"], "pseudonym": "M"}),
    Row("POST", "/api/jobs/batch_query", (403, 403, 201, 201),
        files=lambda: {"file": ("q.csv", BATCH_QUERY_CSV)},
        form={"params": json.dumps({"source": "SANDBOX"})}),
    Row("POST", "/api/jobs/batch_transfer", (403, 403, 201, 201),
        files=lambda: {"file": ("t.csv", BATCH_TRANSFER_CSV)},
        form={"params": json.dumps({"source": "SANDBOX", "to": "OUT"})}),
    Row("POST", "/api/jobs/mass_transfer", (403, 403, 201, 201),
        json={"source": "SANDBOX", "to": "OUT", "start": "2020-01-01", "end": "2020-01-01",
              "filters": [{"modality": "CT"}]}),
    Row("GET", "/api/jobs/{job_id}", (403, 403, 200, 200), setup=_job),
    Row("DELETE", "/api/jobs/{job_id}", (403, 403, 204, 204), setup=_job),
    Row("GET", "/api/jobs/{job_id}/progress", (403, 403, 200, 200), setup=_job),
    Row("GET", "/api/jobs/{job_id}/tasks", (403, 403, 200, 200), setup=_job),
    Row("GET", "/api/jobs/{job_id}/results", (403, 403, 200, 200), setup=_job),
    Row("GET", "/api/jobs/{job_id}/leak-scan", (403, 403, 400, 400), setup=_job),
    Row("POST", "/api/jobs/{job_id}/{action}", (403, 403, 400, 400), setup=_job),
    Row("POST", "/api/jobs/tasks/{task_id}/reset", (403, 403, 200, 200), setup=_task),
    Row("POST", "/api/deid/explain", (403, 200, 200, 200),
        files=lambda: {"file": ("x.dcm", dicom_bytes())}, form={"params": "{}"}),
    Row("GET", "/api/tokens", OK4),
    Row("POST", "/api/tokens", (201, 201, 201, 201), json={"expires": 1}),
    Row("DELETE", "/api/tokens/{token_id}", (404, 404, 404, 200), setup=_token),
    Row("GET", "/api/admin/groups", ADMIN_ONLY),
    Row("GET", "/api/admin/groups/{group}", ADMIN_ONLY, setup=_granted),
    Row("POST", "/api/admin/groups/{group}/nodes", ADMIN_ONLY, setup=_group,
        json={"node": "OTHER", "source": True}),
    Row("DELETE", "/api/admin/groups/{group}/nodes/{node}", ADMIN_ONLY, setup=_granted),
    Row("POST", "/api/admin/groups/{group}/permissions", ADMIN_ONLY, setup=_group,
        json={"permission": "explorer"}),
    Row("DELETE", "/api/admin/groups/{group}/permissions/{permission}", ADMIN_ONLY,
        setup=_group),
    Row("PUT", "/api/admin/groups/{group}/members", ADMIN_ONLY, setup=_group,
        json={"users": []}),
    Row("GET", "/api/admin/users", ADMIN_ONLY),
    Row("GET", "/api/admin/audit", ADMIN_ONLY),
    Row("GET", "/api/admin/audit/events", ADMIN_ONLY),
    Row("GET", "/api/admin/usage", ADMIN_ONLY),
    Row("PUT", "/api/admin/site", ADMIN_ONLY, json={"announcement": "hello"}),
]  # fmt: skip


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (its OpenAPI paths and docs pages)."""
    found = {("GET", "/openapi.json"), ("GET", "/docs")}
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            found.add((method.upper(), path))
    return found


#: The DICOMweb handlers whose checks tests/web/test_dicomweb.py's matrix runs for every
#: kind of caller; each DICOMweb route is one of them under another path spelling
#: (ADIT's qidors/wadors/stowrs segments or the standard layout, study/series/instance).
DICOMWEB_HANDLERS = {
    "search_studies", "search_series", "search_instances", "retrieve", "retrieve_metadata",
    "store",
}  # fmt: skip


def test_every_dicomweb_route_has_a_checked_handler(service_settings: Any, database: Any) -> None:
    app = create_app(service_settings, database)
    unchecked = [
        (sorted(route.methods), route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        and route.path.startswith("/dicom-web/")
        and route.endpoint.__name__ not in DICOMWEB_HANDLERS
    ]
    assert not unchecked, f"DICOMweb routes outside the checked handlers: {unchecked}"


def test_every_route_has_a_row(service_settings: Any, database: Any) -> None:
    app = create_app(service_settings, database)
    rows = {(r.method, r.path) for r in MATRIX}
    missing = {route for route in app_routes(app) if not route[1].startswith("/dicom-web/")}
    missing -= rows
    assert not missing, f"routes without a row in the permission matrix: {sorted(missing)}"
    assert not rows - app_routes(app), "rows for routes the app does not have"


def _send(running: Running, row: Row, caller: str, ctx: Context) -> requests.Response:
    values = dict(row.fill)
    if row.setup is not None:
        values.update(row.setup(ctx))
    path = row.path.format(**values)
    token = None if caller == "anonymous" else ctx.people.tokens[caller]
    session = running.session(token)
    body = row.json(ctx) if callable(row.json) else row.json
    kwargs: dict[str, Any] = {"timeout": 60}
    if body is not None:
        kwargs["json"] = body
    if row.files is not None:
        kwargs["files"] = row.files()
        kwargs["data"] = row.form
    return session.request(row.method, running.url.rstrip("/") + path, **kwargs)


def test_permission_matrix(
    service: Running, people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Made-up study UIDs: this matrix is about who may submit, not what the PACS holds
    # (the service runs in this process, so the submit-time study check can be switched off).
    monkeypatch.setattr(job_defaults, "CHECK_STUDIES_AT_SUBMIT", False)
    ctx = Context(people, tmp_path)
    people.admin.admin.grant(ctx.group, "SANDBOX", source=True)
    wrong: list[str] = []
    for row in MATRIX:
        expected = dict(zip(USERS, row.expect, strict=True))
        for caller in UNAUTHENTICATED:
            expected[caller] = expected["boss"] if row.public else 401
        for caller, status in expected.items():
            response = _send(service, row, caller, ctx)
            if response.status_code != status:
                wrong.append(
                    f"{row.method} {row.path} as {caller}: {response.status_code} "
                    f"(expected {status}) {response.text[:400]}"
                )
            elif status >= 400 and row.path.startswith("/api/"):
                body = response.json()
                assert set(body) >= {"error", "message"}, body
                assert "Traceback" not in response.text
    assert not wrong, "\n".join(wrong)
