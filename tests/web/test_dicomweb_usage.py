"""Usage statistics of DICOMweb, for admins: real requests through the service, then the
admin route and the admin facade read them back from the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from pydicom import Dataset

from adit_workbench.sandbox.synthetic import iter_datasets
from tests.servers._util import wait_until
from tests.web.conftest import People, Running
from tests.web.test_dicomweb import (  # noqa: F401  (fixtures)
    _receiver,
    client,
    folder_study,
    nodes,
    originals,
    pacs_pair,
    users,
)


def _usage(service: Running, token: str, **params: str) -> requests.Response:
    return requests.get(
        f"{service.url}api/admin/usage",
        params=params,
        headers={"Authorization": f"Token {token}"},
        timeout=60,
    )


def _row(answer: dict[str, Any], user: str, node: str) -> dict[str, Any]:
    return next(r for r in answer["rows"] if r["user"] == user and r["node"] == node)


def test_admins_see_dicomweb_use_per_user_and_node(
    service: Running,
    users: dict[str, str],  # noqa: F811
    people: People,
    originals: list[Dataset],  # noqa: F811
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    study = str(originals[0].StudyInstanceUID)
    dora1 = client(service, "ORTHANC1", users["dora"])
    assert len(dora1.search_for_studies()) == 1
    assert len(dora1.search_for_series(study)) == 2
    got = dora1.retrieve_study(study)
    assert len(got) == len(originals)
    new = list(iter_datasets(patients=1, series=1, instances=2, seed=77, pid_prefix="US"))
    dora1.store_instances(new)
    dora2 = client(service, "ORTHANC2", users["dora"])
    assert len(dora2.retrieve_study(study)) == len(originals)  # relayed unparsed
    pia = client(service, "ORTHANC2", users["pia"])
    assert len(pia.retrieve_study(study, additional_params={"pseudonym": "U-1"})) == 6
    forbidden = requests.get(
        f"{service.url}dicom-web/ORTHANC2/studies/{study}",
        headers={"Authorization": f"Token {users['pia']}"},
        timeout=60,
    )
    assert forbidden.status_code == 403

    def totals() -> dict[str, Any]:
        answer = _usage(service, people.token("boss"), **{"from": started.isoformat()})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    # a WADO row is written when its stream has ended: wait for the last one
    wait_until(lambda: _row(totals(), "pia", "ORTHANC2")["wado_requests"] == 2, timeout=20,
               what="the usage of the last retrieve")  # fmt: skip
    answer = totals()
    one = _row(answer, "dora", "ORTHANC1")
    size = sum(len(ds.PixelData) for ds in originals)
    assert one["qido_requests"] == 2 and one["qido_matches"] == 1 + 2
    assert one["wado_requests"] == 1 and one["wado_instances"] == len(originals)
    assert one["wado_bytes"] > size
    assert one["stow_requests"] == 1 and one["stow_instances"] == 2
    assert one["stow_bytes"] > sum(len(ds.PixelData) for ds in new)
    assert one["denied"] == one["failed"] == 0
    two = _row(answer, "dora", "ORTHANC2")
    assert two["wado_requests"] == 1 and two["wado_instances"] == len(originals)
    assert two["wado_bytes"] > size
    assert two["qido_requests"] == two["stow_requests"] == 0
    pseudonymized = _row(answer, "pia", "ORTHANC2")
    assert pseudonymized["wado_instances"] == len(originals)
    assert pseudonymized["denied"] == 1
    # filters: by user, by node, by time
    only_pia = _usage(service, people.token("boss"), user="pia").json()["rows"]
    assert {r["user"] for r in only_pia} == {"pia"}
    only_two = _usage(service, people.token("boss"), node="ORTHANC2").json()["rows"]
    assert {(r["user"], r["node"]) for r in only_two} == {("dora", "ORTHANC2"), ("pia", "ORTHANC2")}
    before = _usage(service, people.token("boss"), to=started.isoformat())
    assert before.status_code == 200 and before.json()["rows"] == []
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert _usage(service, people.token("boss"), **{"from": later}).json()["rows"] == []
    backwards = _usage(service, people.token("boss"), **{"from": later, "to": "2020-01-01"})
    assert backwards.status_code == 400
    assert _usage(service, people.token("boss"), to="yesterday").status_code in (400, 422)
    # the admin facade says the same
    facade = people.admin.admin.usage(since=started, user="dora", node="ORTHANC1")
    assert len(facade) == 1 and facade[0].wado_bytes == one["wado_bytes"]


def test_usage_is_for_admins_only(
    service: Running,
    users: dict[str, str],  # noqa: F811
    people: People,
) -> None:
    for name in ("dora", "pia", "vic"):
        assert _usage(service, users[name]).status_code == 403
    assert requests.get(f"{service.url}api/admin/usage", timeout=30).status_code == 401
    assert _usage(service, people.token("boss")).status_code == 200
