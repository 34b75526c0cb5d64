"""Malformed requests: each answered with the right 4xx and a clear message, none with a
500 or a traceback, and nothing written (rows counted before and after)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.conftest import People, Running, row_counts

JSON = {"Content-Type": "application/json"}
Q = "/api/nodes/SANDBOX/query"
T = "/api/jobs/transfer"
M = "/api/jobs/mass_transfer"
GOOD_TRANSFER = {"source": "SANDBOX", "to": "OUT", "studies": ["1.2.3"], "pseudonym": "P"}
GOOD_MASS = {"source": "SANDBOX", "to": "OUT", "start": "2020-01-01", "end": "2020-01-02",
             "filters": [{"modality": "CT"}]}  # fmt: skip


def q(**body: Any) -> dict[str, Any]:
    return {"json": body}


def flt(**filters: Any) -> dict[str, Any]:
    return {"json": {"filters": filters}}


def transfer(**changes: Any) -> dict[str, Any]:
    return {"json": {**GOOD_TRANSFER, **changes}}


def mass(**changes: Any) -> dict[str, Any]:
    return {"json": {**GOOD_MASS, **changes}}


def upload(name: str, data: bytes = b"PatientID\nSYN0001\n", params: Any = None) -> dict[str, Any]:
    form = json.dumps(params if params is not None else {"source": "SANDBOX"})
    return {"files": {"file": (name, data)}, "data": {"params": form}}


def _chunks(size: int) -> Iterator[bytes]:
    block = b" " * 1_000_000
    for _ in range(size // len(block)):
        yield block


BIG = 21_000_000  # the default cap is 20 MB

# (method, path, request keyword arguments, status, fragment of the message)
# fmt: off
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # -- bad JSON -----------------------------------------------------------------------
    ("POST", Q, {"data": "{", "headers": JSON}, 400, "not valid JSON"),
    ("POST", T, {"data": "[1, 2", "headers": JSON}, 400, "not valid JSON"),
    ("POST", "/api/tokens", {"data": "not json", "headers": JSON}, 400, "not valid JSON"),
    ("PUT", "/api/admin/site", {"data": "{'a': 1}", "headers": JSON}, 400, "not valid JSON"),
    ("POST", "/api/nodes", {"data": "", "headers": JSON}, 422, "required"),
    ("POST", "/api/admin/groups/g/nodes", {"data": "nul\x00l", "headers": JSON}, 400, "JSON"),
    # -- wrong content type --------------------------------------------------------------
    ("POST", Q, {"data": "level=study", "headers": {"Content-Type":
     "application/x-www-form-urlencoded"}}, 415, "application/json"),
    ("POST", T, {"data": "x", "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
    ("POST", "/api/jobs/batch_query", q(source="SANDBOX"), 415, "multipart/form-data"),
    ("POST", "/api/tokens", {"data": "<a/>", "headers": {"Content-Type": "application/xml"}},
     415, "application/json"),
    # -- wrong types ---------------------------------------------------------------------
    ("POST", Q, q(limit="ten"), 422, "limit"),
    ("POST", Q, q(limit=0), 422, "limit"),
    ("POST", Q, q(limit=-5), 422, "limit"),
    ("POST", Q, q(limit=10**9), 422, "limit"),
    ("POST", Q, q(level="galaxy"), 422, "level"),
    ("POST", Q, q(filters="patient_id=1"), 422, "filters"),
    ("POST", Q, q(filters={"patient_id": {"$ne": 1}}), 422, "filters"),
    ("POST", Q, q(via="carrier-pigeon"), 422, "via"),
    ("POST", Q, q(stream="maybe"), 422, "stream"),
    ("POST", T, transfer(studies="1.2.3"), 422, "studies"),
    ("POST", T, transfer(studies=[]), 422, "studies"),
    ("POST", T, {"json": {"source": "SANDBOX", "studies": ["1.2"]}}, 422, "to: required"),
    ("POST", T, transfer(urgent="very"), 422, "urgent"),
    ("POST", "/api/tokens", q(expires=2), 422, "expires"),
    ("POST", "/api/tokens", q(expires="forever"), 422, "expires"),
    ("PUT", "/api/admin/site", q(maintenance="on-ish"), 422, "maintenance"),
    ("POST", "/api/admin/groups/g/nodes", q(node=5), 422, "node"),
    ("PUT", "/api/admin/groups/g/members", q(users="boss"), 422, "users"),
    ("POST", M, mass(start=20200101), 422, "start"),
    # -- unknown fields ------------------------------------------------------------------
    ("POST", Q, q(filterz={}), 422, "filterz: unknown field"),
    ("POST", T, transfer(priority=1), 422, "priority: unknown field"),
    ("POST", "/api/tokens", q(scope="all"), 422, "scope: unknown field"),
    ("POST", "/api/nodes", q(name="X", kind="folder", path="/tmp", owner="me"), 422,
     "owner: unknown field"),
    ("PUT", "/api/admin/site", q(maintenance=False, shutdown=True), 422, "shutdown"),
    ("POST", "/api/jobs/batch_query", upload("q.csv", params={"source": "SANDBOX",
     "verbose": True}), 400, "verbose: unknown field"),
    ("POST", "/api/admin/groups/g/permissions", q(permission="admin", group="x"), 422, "group"),
    ("POST", Q, flt(no_such_filter="x"), 400, "unknown query filter"),
    # -- huge bodies ---------------------------------------------------------------------
    ("POST", Q, {"data": b"{" + b" " * BIG + b"}", "headers": JSON}, 413, "exceeds"),
    ("POST", "/api/jobs/batch_query", upload("q.csv", b"PatientID\n" + b"1\n" * (BIG // 2)),
     413, "exceeds"),
    ("POST", Q, {"data": _chunks(BIG + 1_000_000), "headers": JSON}, 413, "exceeds"),
    ("POST", T, transfer(studies=["1.2.3"] * 20_000), 422, "studies"),
    ("POST", Q, q(filters={f"k{i}": "x" for i in range(100)}), 422, "filters"),
    ("POST", Q, flt(patient_id="A" * 20_000), 422, "filters"),
    # -- bad dates -----------------------------------------------------------------------
    ("POST", Q, flt(study_date="2020-13-01"), 400, "study_date"),
    ("POST", Q, flt(study_date=["2021-01-01", "2020-01-01"]), 400, "ends before"),
    ("POST", Q, flt(study_date=["2020-01-01"]), 400, "pair"),
    ("POST", Q, flt(study_date="yesterday"), 400, "study_date"),
    ("POST", Q, flt(patient_birth_date="1990-02-30"), 400, "birth"),
    ("POST", M, mass(start="2020-02-30"), 400, "start"),
    ("POST", M, mass(start="2020-02-01", end="2020-01-01"), 400, "before"),
    ("POST", M, mass(start="01/02/2020"), 400, "date"),
    ("GET", "/api/admin/audit?since=last-tuesday", {}, 422, "since"),
    # -- bad UIDs ------------------------------------------------------------------------
    ("POST", T, transfer(studies=["1.2.abc"]), 422, "studies"),
    ("POST", T, transfer(studies=[{"study_uid": "1..2"}]), 422, "studies"),
    ("POST", T, transfer(studies=[{"study_uid": "1.2", "series_uid": "x"}]), 422, "series_uid"),
    ("POST", T, transfer(studies=["1." + "2" * 70]), 422, "studies"),
    ("POST", Q, flt(study_uid="1.2.three"), 400, "study_uid"),
    ("POST", "/api/nodes/SANDBOX/find", q(level="STUDY", identifier="PatientID=1"), 422,
     "identifier"),
    ("POST", "/api/nodes/SANDBOX/find", q(level="STUDY", identifier={"zz": {}}), 400,
     "DICOM JSON"),
    # -- wildcard abuse ------------------------------------------------------------------
    ("POST", Q, flt(modality="*"), 400, "modality"),
    ("POST", Q, flt(modality="C?"), 400, "modality"),
    ("POST", Q, flt(series_description="*"), 400, "series level"),
    ("POST", Q, flt(limit=5), 400, "not a filter"),
    ("POST", Q, q(level="patient", filters={"modality": ["CT", "*"]}), 400, "modality"),
    # -- path tricks in names ------------------------------------------------------------
    ("GET", "/api/nodes/..%2F..%2Fetc%2Fpasswd", {}, 404, ""),
    ("GET", "/api/nodes/%2e%2e", {}, 404, ""),
    ("POST", "/api/nodes", q(name="../evil", kind="folder", path="/tmp"), 422, "name"),
    ("POST", "/api/nodes", q(name="a/b", kind="folder", path="/tmp"), 422, "name"),
    ("POST", "/api/jobs/batch_query", upload("../../etc/passwd.csv"), 400, "plain name"),
    ("POST", "/api/jobs/batch_query", upload("q.exe"), 400, ".csv or .xlsx"),
    # The multipart parser keeps the base name only: the folder part never arrives.
    ("POST", "/api/jobs/batch_query", upload("C:\\x.csv"), 422, "batch file x.csv is invalid"),
    ("POST", M, mass(filters="/etc/passwd"), 400, "invalid JSON"),
    ("POST", M, mass(filters="{not json"), 400, "invalid JSON"),
    ("POST", T, transfer(source="../SANDBOX"), 422, "source"),
    ("GET", "/api/admin/groups/..%2Fadmins", {}, 404, "no such API route"),
    ("GET", "/api/admin/groups/%2e%2e", {}, 404, "no group"),
    ("POST", "/api/deid/explain", {"files": {"file": ("x.dcm", b"MZ\x90\x00")}}, 400,
     "not a DICOM"),
    ("POST", "/api/deid/explain", {"files": {"file": ("x.dcm", b"")},
     "data": {"params": '{"project_name": "P", "salt": 1}'}}, 400, "salt: unknown field"),
    ("POST", "/api/deid/explain", {"files": {"file": ("x.dcm", b"")},
     "data": {"params": '{"deid_options": ["NO_SUCH_OPTION"]}'}}, 400, "NO_SUCH_OPTION"),
    # -- ids, actions, query strings ------------------------------------------------------
    ("GET", "/api/jobs/abc", {}, 422, "job_id"),
    ("GET", "/api/jobs/-1", {}, 422, "job_id"),
    ("GET", "/api/jobs/99999999", {}, 404, "no job"),
    ("POST", "/api/jobs/1/explode", {}, 422, "action"),
    ("DELETE", "/api/tokens/0", {}, 422, "token_id"),
    ("GET", "/api/jobs?limit=0", {}, 422, "limit"),
    ("GET", "/api/jobs?status=BOGUS", {}, 400, "status"),
    ("GET", "/api/jobs/1/results?format=exe", {}, 422, "format"),
    ("POST", "/api/admin/groups/newgroup/permissions", q(permission="superpowers"), 400,
     "superpowers"),
    ("POST", "/api/admin/groups/newgroup/nodes", q(node="NOPE"), 404, "NOPE"),
    ("PUT", "/api/admin/site", q(), 400, "maintenance"),
    ("POST", "/api/nodes", q(name="S2", kind="server"), 400, "ae_title"),
    # -- credentials and routes -----------------------------------------------------------
    ("GET", "/api/me", {"headers": {"Authorization": "Basic YWxpY2U6cHc="}}, 401, "Token"),
    ("GET", "/api/me", {"headers": {"Authorization": "Token "}}, 401, "Token"),
    ("GET", "/api/me", {"headers": {"Authorization": "Token awb_123"}}, 401, "token"),
    ("GET", "/api/nope", {}, 404, "no such API route"),
    ("PATCH", "/api/nodes", q(name="x"), 405, ""),
]
# fmt: on


def test_enough_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_malformed_requests(service: Running, people: People) -> None:
    session = service.session(people.token("boss"))
    before = row_counts(service.database)
    wrong: list[str] = []
    for method, path, kwargs, status, fragment in CASES:
        response = session.request(method, service.url.rstrip("/") + path, timeout=60, **kwargs)
        where = f"{method} {path} {str(kwargs)[:80]}"
        if response.status_code != status:
            wrong.append(
                f"{where}: {response.status_code} (expected {status}) {response.text[:300]}"
            )
            continue
        body = response.json()
        if set(body) < {"error", "message"} or fragment not in body["message"]:
            wrong.append(f"{where}: message {body.get('message')!r} lacks {fragment!r}")
        if "Traceback" in response.text or response.status_code >= 500:
            wrong.append(f"{where}: server error {response.text[:200]}")
    assert not wrong, "\n".join(wrong)
    assert row_counts(service.database) == before
