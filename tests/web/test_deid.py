"""``POST /api/deid/explain`` answers what a job's pseudonymizer would do, exactly."""

from __future__ import annotations

import io
import json

import pytest
from pydicom import dcmread

from adit_workbench.config import Settings
from adit_workbench.deid import explain
from adit_workbench.jobs.execute import build_pseudonymizer
from tests.web.conftest import People, Running, dicom_bytes

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_explain_matches_the_jobs_pseudonymizer(
    service: Running, people: People, service_settings: Settings
) -> None:
    data = dicom_bytes()
    params = {"project_name": "P1", "pseudonym": "SUBJ-9", "deid_options": ["RETAIN_UIDS"]}
    answer = service.session(people.token("alice")).post(
        service.url + "api/deid/explain",
        files={"file": ("x.dcm", data)},
        data={"params": json.dumps(params)},
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["rows"]
    job = {"pseudonymize": True, "project_name": "P1", "deid_options": ["RETAIN_UIDS"]}
    pseudonymizer = build_pseudonymizer(service_settings, job, "SUBJ-9")
    assert pseudonymizer is not None
    expected = explain(dcmread(io.BytesIO(data)), pseudonymizer).to_records()
    assert rows == expected
    assert any(r["keyword"] == "PatientID" and r["after"] == "SUBJ-9" for r in rows)


def test_explain_refuses_non_dicom_and_users_without_transfer(
    service: Running, people: People
) -> None:
    upload = {"file": ("x.dcm", b"not dicom at all")}
    answer = service.session(people.token("alice")).post(
        service.url + "api/deid/explain", files=upload
    )
    assert answer.status_code == 400 and "DICOM" in answer.json()["message"]
    answer = service.session(people.token("nina")).post(
        service.url + "api/deid/explain", files={"file": ("x.dcm", dicom_bytes())}
    )
    assert answer.status_code == 403 and "selective_transfer" in answer.json()["message"]
