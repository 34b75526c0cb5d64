"""DICOMweb on the service, against two real Orthancs: ORTHANC1 registered DIMSE-only
(C-FIND, C-GET, C-MOVE, C-STORE), ORTHANC2 registered by its DICOMweb root (QIDO, WADO,
STOW), plus a folder node. The client is an unchanged ``dicomweb_client``."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset

from adit_workbench.access import Identity, IdentitySource, Permission, sign_in
from adit_workbench.deid import scan_leaks
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.jobs.execute import build_pseudonymizer
from adit_workbench.sandbox.synthetic import iter_datasets
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.access import AuditEvent
from adit_workbench.transfer import FolderDestination, transfer_study
from adit_workbench.workbench import Workbench
from tests.servers._util import wait_until
from tests.servers.orthanc import OrthancServer
from tests.web.conftest import People, Running

DIMSE_CAPS = Capabilities(
    patient_root_find=True,
    study_root_find=True,
    patient_root_get=True,
    study_root_get=True,
    patient_root_move=True,
    study_root_move=True,
    store=True,
)
WEB_CAPS = Capabilities(study_root_find=False, qido=True, wado=True, stow=True)
NODES = ("ORTHANC1", "ORTHANC2")
_names = itertools.count(1)


@pytest.fixture(autouse=True)
def _receiver(monkeypatch: pytest.MonkeyPatch, receiver_ae: tuple[str, int]) -> None:
    """The service's C-MOVE receiver is the one the Orthancs know."""
    monkeypatch.setenv("ADIT_WB_AE_TITLE", receiver_ae[0])
    monkeypatch.setenv("ADIT_WB_RECEIVER_PORT", str(receiver_ae[1]))


@pytest.fixture(scope="module")
def originals() -> list[Dataset]:
    """One PHI-rich study: 2 series x 3 instances."""
    return list(
        iter_datasets(patients=1, studies=1, series=2, instances=3, seed=14, pid_prefix="DW")
    )


@pytest.fixture
def pacs_pair(
    orthanc: OrthancServer, orthanc2: OrthancServer, originals: list[Dataset]
) -> tuple[OrthancServer, OrthancServer]:
    for server in (orthanc, orthanc2):
        server.clear()
        server.upload(originals)
    return orthanc, orthanc2


@pytest.fixture
def folder_study(tmp_path: Path, originals: list[Dataset]) -> Path:
    root = tmp_path / "fold"
    for i, ds in enumerate(originals):
        (root / str(i)).mkdir(parents=True)
        ds.save_as(root / str(i) / "x.dcm", enforce_file_format=True)
    return root


@pytest.fixture
def nodes(
    database: Database, pacs_pair: tuple[OrthancServer, OrthancServer], folder_study: Path
) -> None:
    one, two = pacs_pair
    with database.session() as session:
        node_store.add_server(
            session,
            ServerSpec("ORTHANC1", one.ae_title, one.host, one.dicom_port, capabilities=DIMSE_CAPS),
        )
        node_store.add_server(
            session,
            ServerSpec(
                "ORTHANC2",
                two.ae_title,
                two.host,
                two.dicom_port,
                dicomweb_root_url=two.dicomweb_url,
                capabilities=WEB_CAPS,
            ),
        )
        node_store.add_folder(session, FolderSpec("FOLD", folder_study))


def make_user(
    people: People,
    name: str,
    *permissions: Permission,
    source: tuple[str, ...] = (),
    destination: tuple[str, ...] = (),
) -> str:
    group = f"dw{next(_names)}-{name}"
    access = sign_in(
        people.database, Identity(name, IdentitySource.JUPYTERHUB, groups=(group,)), embedded=False
    )
    for node in set(source) | set(destination):
        people.admin.admin.grant(
            group, node, source=node in source, destination=node in destination
        )
    for permission in (Permission.REST_API, *permissions):
        people.admin.admin.add_permission(group, permission)
    people.access[name] = access
    people.tokens[name] = access.tokens.create(expires=30).token
    return people.tokens[name]


@pytest.fixture
def users(people: People, nodes: None) -> dict[str, str]:
    """dora may do everything, pia only pseudonymized, dst only store, vic nothing here."""
    everything = (*NODES, "FOLD")
    return {
        "dora": make_user(
            people,
            "dora",
            Permission.TRANSFER_UNPSEUDONYMIZED,
            source=everything,
            destination=everything,
        ),
        "pia": make_user(people, "pia", source=NODES),
        "dst": make_user(
            people, "dst", Permission.TRANSFER_UNPSEUDONYMIZED, destination=("ORTHANC1",)
        ),
        "vic": make_user(people, "vic", Permission.TRANSFER_UNPSEUDONYMIZED),
    }


def client(service: Running, node: str, token: str | None, **kwargs: Any) -> DICOMwebClient:
    headers = {"Authorization": f"Token {token}"} if token else None
    return DICOMwebClient(url=f"{service.url}dicom-web/{node}", headers=headers, **kwargs)


def uids(items: list[dict[str, Any]], keyword_tag: str) -> set[str]:
    return {item[keyword_tag]["Value"][0] for item in items}


STUDY_TAG, SERIES_TAG, SOP_TAG, NAME_TAG = "0020000D", "0020000E", "00080018", "00100010"


# -- search, retrieve, store through an unchanged dicomweb_client -----------------------
@pytest.mark.parametrize("node", [*NODES, "FOLD"])
def test_qido_answers_what_the_pacs_holds(
    service: Running, users: dict[str, str], originals: list[Dataset], node: str
) -> None:
    web = client(service, node, users["dora"])
    study = str(originals[0].StudyInstanceUID)
    studies = web.search_for_studies()
    assert uids(studies, STUDY_TAG) == {study}
    assert studies[0][NAME_TAG]["Value"][0]["Alphabetic"] == str(originals[0].PatientName)
    series = web.search_for_series(study)
    assert uids(series, SERIES_TAG) == {str(ds.SeriesInstanceUID) for ds in originals}
    one = str(originals[0].SeriesInstanceUID)
    instances = web.search_for_instances(study, one)
    expected = {str(ds.SOPInstanceUID) for ds in originals if ds.SeriesInstanceUID == one}
    assert uids(instances, SOP_TAG) == expected
    # ADIT's segment layout answers the same
    adit = client(service, node, users["dora"], qido_url_prefix="qidors")
    assert uids(adit.search_for_instances(study), SOP_TAG) == {
        str(ds.SOPInstanceUID) for ds in originals
    }
    assert web.search_for_studies(search_filters={"PatientID": "NOBODY"}) == []
    # series and instance searches across studies
    every_series = {str(ds.SeriesInstanceUID) for ds in originals}
    assert uids(web.search_for_series(), SERIES_TAG) == every_series
    assert uids(web.search_for_instances(), SOP_TAG) == {str(ds.SOPInstanceUID) for ds in originals}
    assert len(web.search_for_studies(limit=1, offset=1)) == 0


@pytest.mark.parametrize(
    ("node", "via"),
    [("ORTHANC1", "cget"), ("ORTHANC1", "cmove"), ("ORTHANC2", "auto"), ("FOLD", "auto")],
)
def test_wado_retrieves_what_the_pacs_holds(
    service: Running, users: dict[str, str], originals: list[Dataset], node: str, via: str
) -> None:
    web = client(service, node, users["dora"], wado_url_prefix="wadors")
    study = str(originals[0].StudyInstanceUID)
    got = web.retrieve_study(study, additional_params={"via": via})
    by_uid = {str(ds.SOPInstanceUID): ds for ds in originals}
    assert {str(ds.SOPInstanceUID) for ds in got} == set(by_uid)
    for ds in got:
        assert ds.PixelData == by_uid[str(ds.SOPInstanceUID)].PixelData
        assert ds.PatientName == by_uid[str(ds.SOPInstanceUID)].PatientName
    series = str(originals[0].SeriesInstanceUID)
    sop = str(originals[0].SOPInstanceUID)
    plain = client(service, node, users["dora"])
    assert len(plain.retrieve_series(study, series)) == 3
    assert plain.retrieve_instance(study, series, sop).SOPInstanceUID == sop
    metadata = plain.retrieve_study_metadata(study)
    assert uids(metadata, SOP_TAG) == set(by_uid)


@pytest.mark.parametrize("node", [*NODES, "FOLD"])
def test_stow_stores_on_the_node(
    service: Running,
    users: dict[str, str],
    pacs_pair: tuple[OrthancServer, OrthancServer],
    node: str,
) -> None:
    new = list(iter_datasets(patients=1, series=1, instances=2, seed=99, pid_prefix="ST"))
    web = client(service, node, users["dora"])
    answer = web.store_instances(new)
    referenced = answer.ReferencedSOPSequence
    assert {str(i.ReferencedSOPInstanceUID) for i in referenced} == {
        str(ds.SOPInstanceUID) for ds in new
    }
    assert "FailedSOPSequence" not in answer
    found = web.search_for_instances(str(new[0].StudyInstanceUID))
    assert uids(found, SOP_TAG) == {str(ds.SOPInstanceUID) for ds in new}


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "XyZ") -> bytes:
    body = b""
    for kind, data in parts:
        body += f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("node", NODES)
def test_stow_mixed_body_stores_the_good_and_reports_each_bad(
    service: Running, users: dict[str, str], pacs_pair: tuple[OrthancServer, ...], node: str
) -> None:
    good, other = iter_datasets(patients=2, series=1, instances=1, seed=7, pid_prefix="MX")
    study = str(good.StudyInstanceUID)
    body = _multipart(
        [
            ("application/dicom", _bytes(good)),
            ("application/dicom", b"not a DICOM file at all"),
            ("application/dicom", _bytes(other)),  # another study than the URL's
            ("text/plain", b"hello"),
        ]
    )
    answer = requests.post(
        f"{service.url}dicom-web/{node}/stowrs/studies/{study}",
        data=body,
        headers={
            "Authorization": f"Token {users['dora']}",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=XyZ',
        },
        timeout=60,
    )
    assert answer.status_code == 409
    result = Dataset.from_json(answer.json())
    assert [str(i.ReferencedSOPInstanceUID) for i in result.ReferencedSOPSequence] == [
        str(good.SOPInstanceUID)
    ]
    reasons = sorted(int(i.FailureReason) for i in result.FailedSOPSequence)
    assert reasons == [0xA900, 0xC000, 0xC000]
    server = pacs_pair[NODES.index(node)]
    held = server.rest("GET", "/instances?expand")
    sops = {i["MainDicomTags"]["SOPInstanceUID"] for i in held}
    assert str(good.SOPInstanceUID) in sops
    assert str(other.SOPInstanceUID) not in sops


# -- pseudonymization --------------------------------------------------------------------
@pytest.mark.parametrize("node", NODES)
def test_pseudonymized_wado_is_clean_and_matches_a_transfer(
    service: Running,
    users: dict[str, str],
    originals: list[Dataset],
    database: Database,
    people: People,
    tmp_path: Path,
    node: str,
) -> None:
    study = str(originals[0].StudyInstanceUID)
    params = {"pseudonym": "SUBJ-01", "trial_protocol_id": "T1"}
    got = client(service, node, users["pia"]).retrieve_study(study, additional_params=params)
    assert len(got) == len(originals)
    out = tmp_path / "wado"
    out.mkdir()
    for i, ds in enumerate(got):
        ds.save_as(out / f"{i}.dcm", enforce_file_format=True)
    report = scan_leaks(originals, sorted(out.iterdir()))
    assert report.clean, str(report)
    assert {str(ds.PatientID) for ds in got} == {"SUBJ-01"}
    # The same study through the transfer layer with the job's pseudonymizer.
    job = {"pseudonymize": True, "trial_protocol_id": "T1", "project_name": "default"}
    pz = build_pseudonymizer(service.settings, job, "SUBJ-01")
    wb = Workbench(service.settings, database, people.access["dora"])
    try:
        dest = tmp_path / "transfer"
        transfer_study(
            wb.node(node),
            FolderDestination(dest),
            study,
            pseudonymizer=pz,
            settings=service.settings,
        )
    finally:
        wb.close()
    moved = [pydicom.dcmread(p) for p in dest.rglob("*.dcm")]
    key = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyDate", "PatientID")

    def facts(items: list[Dataset]) -> set[tuple[str, ...]]:
        return {tuple(str(ds.get(k, "")) for k in key) for ds in items}

    assert facts(got) == facts(moved)
    assert not {str(ds.SOPInstanceUID) for ds in got} & {str(ds.SOPInstanceUID) for ds in originals}


def test_qido_for_a_pseudonymizing_caller_echoes_no_identifier(
    service: Running, users: dict[str, str], originals: list[Dataset]
) -> None:
    web = client(service, "ORTHANC1", users["pia"])
    found = web.search_for_studies(fields=["PatientBirthDate", "InstitutionName"])
    text = str(found)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        value = str(originals[0].get(keyword, ""))
        assert value and value not in text, keyword
    # the study UID stays: it is what the caller retrieves by
    assert uids(found, STUDY_TAG) == {str(originals[0].StudyInstanceUID)}


# -- permissions and errors ----------------------------------------------------------------
def _routes(study: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/studies"),
        ("GET", "/qidors/studies"),
        ("GET", f"/studies/{study}/series"),
        ("GET", f"/qidors/studies/{study}/instances"),
        ("GET", f"/wadors/studies/{study}"),
        ("GET", f"/studies/{study}/metadata"),
        ("POST", "/stowrs/studies"),
    ]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        # user: (qido ×4, wado, metadata, stow) on ORTHANC1
        (None, (401,) * 7),
        ("expired", (401,) * 7),
        ("revoked", (401,) * 7),
        ("vic", (404,) * 7),  # no access to the node: as if it did not exist
        ("dst", (403, 403, 403, 403, 403, 403, 200)),
        ("pia", (200, 200, 200, 200, 403, 403, 403)),  # no unpseudonymized retrieve
        ("dora", (200,) * 7),
        ("boss", (200,) * 7),
    ],
)
def test_permission_matrix(
    service: Running,
    users: dict[str, str],
    people: People,
    originals: list[Dataset],
    who: str | None,
    expected: tuple[int, ...],
) -> None:
    study = str(originals[0].StudyInstanceUID)
    headers = {"Authorization": f"Token {people.token(who)}"} if who else {}
    got = []
    stow = _multipart([("application/dicom", _bytes(originals[0]))])
    for method, path in _routes(study):
        extra = {}
        if method == "POST":
            extra = {
                "data": stow,
                "headers": {
                    **headers,
                    "Content-Type": 'multipart/related; type="application/dicom"; boundary=XyZ',
                },
            }
        else:
            extra = {"headers": headers}
        answer = requests.request(
            method, f"{service.url}dicom-web/ORTHANC1{path}", timeout=60, **extra
        )
        got.append(answer.status_code)
    assert tuple(got) == expected


def test_invisible_node_answers_like_an_unknown_one(
    service: Running, users: dict[str, str]
) -> None:
    s = requests.Session()
    s.headers["Authorization"] = f"Token {users['vic']}"
    stow = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=XyZ'}
    routes = [
        ("GET", "/studies"),
        ("GET", "/wadors/studies/1.2.3"),
        ("GET", "/studies/1.2.3/metadata"),
        ("POST", "/stowrs/studies"),
    ]
    for method, path in routes:
        extra = {"data": b"--XyZ--\r\n", "headers": stow} if method == "POST" else {}
        hidden = s.request(method, f"{service.url}dicom-web/ORTHANC1{path}", timeout=30, **extra)
        unknown = s.request(method, f"{service.url}dicom-web/NOSUCHNODE{path}", timeout=30, **extra)
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.content == unknown.content
        assert hidden.headers["content-type"] == unknown.headers["content-type"]


def test_error_statuses(
    service: Running,
    users: dict[str, str],
    people: People,
    database: Database,
    originals: list[Dataset],
    orthanc2: OrthancServer,
) -> None:
    s = requests.Session()
    s.headers["Authorization"] = f"Token {users['dora']}"
    base = f"{service.url}dicom-web/ORTHANC1"
    study = str(originals[0].StudyInstanceUID)
    assert s.get(f"{base}/studies?NoSuchKeyword=1", timeout=30).status_code == 400
    assert s.get(f"{base}/studies?limit=ten", timeout=30).status_code == 400
    assert s.get(f"{base}/studies?StudyDate=yesterday", timeout=30).status_code == 400
    assert s.get(f"{base}/studies/1.2.x/series", timeout=30).status_code == 400
    assert s.get(f"{base}/studies/{study}?via=carrier-pigeon", timeout=30).status_code == 400
    assert (
        s.get(f"{base}/studies/{study}", headers={"Accept": "image/png"}, timeout=30).status_code
        == 406
    )
    assert s.get(f"{base}/studies", headers={"Accept": "text/html"}, timeout=30).status_code == 406
    missing = s.get(f"{base}/studies/1.2.3.4.5.6", timeout=30)
    assert missing.status_code == 404
    bad_type = s.post(
        f"{base}/studies", data=b"{}", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert bad_type.status_code == 415
    truncated = s.post(
        f"{base}/studies",
        data=b"--XyZ\r\nContent-Type: application/dicom\r\n\r\nab",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=XyZ'},
        timeout=30,
    )
    assert truncated.status_code == 400
    with database.session() as session:
        node_store.add_server(
            session, ServerSpec("DOWN", "DOWN", "127.0.0.1", 9, capabilities=DIMSE_CAPS)
        )
        node_store.add_server(
            session,
            ServerSpec(
                "WRONG",
                "W",
                "127.0.0.1",
                9,
                dicomweb_root_url=orthanc2.url,
                capabilities=WEB_CAPS,
            ),
        )
    s.headers["Authorization"] = f"Token {people.token('boss')}"  # admins see new nodes
    down = s.get(f"{service.url}dicom-web/DOWN/studies", timeout=60)
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) > 0
    assert "DOWN" in down.json()["message"]
    wrong = s.get(f"{service.url}dicom-web/WRONG/studies", timeout=60)
    assert wrong.status_code == 502, wrong.text  # Orthanc's REST root is no DICOMweb root
    assert wrong.json()["message"].startswith("WRONG: QIDO-RS failed")


def test_every_request_leaves_an_audit_row_without_uids_in_clear(
    service: Running, users: dict[str, str], database: Database, originals: list[Dataset]
) -> None:
    from sqlalchemy import select

    study = str(originals[0].StudyInstanceUID)
    web = client(service, "ORTHANC2", users["dora"])
    web.retrieve_study(study)
    web.search_for_series(study)
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action.like("dicomweb.%"))).all()
        found = [(r.action, r.node, r.outcome, dict(r.details or {})) for r in rows]
    actions = {(a, n, o) for a, n, o, _ in found}
    assert ("dicomweb.wado", "ORTHANC2", "ok") in actions
    assert ("dicomweb.qido", "ORTHANC2", "ok") in actions
    assert all(study not in str(details) for *_, details in found)
    wado = next(d for a, *_, d in found if a == "dicomweb.wado")
    assert wado["count"] == len(originals) and wado["study"]


def _big_folder(database: Database, tmp_path: Path, name: str) -> str:
    """A folder node ``name`` holding a study of 40 instances of 0.5 MB; its UID."""
    big = tmp_path / name.lower()
    big.mkdir()
    study = ""
    for i, ds in enumerate(
        iter_datasets(patients=1, series=1, instances=40, rows=512, cols=512, seed=3)
    ):
        study = str(ds.StudyInstanceUID)
        ds.save_as(big / f"{i}.dcm", enforce_file_format=True)
    with database.session() as session:
        node_store.add_folder(session, FolderSpec(name, big))
    return study


def _wado_rows(database: Database) -> list[AuditEvent]:
    from sqlalchemy import select

    with database.session() as session:
        query = select(AuditEvent).where(AuditEvent.action == "dicomweb.wado")
        rows = list(session.scalars(query).all())
        session.expunge_all()
        return rows


def test_wado_streams_the_first_part_before_the_last_is_read(
    service: Running, people: People, database: Database, tmp_path: Path
) -> None:
    """40 instances of 0.5 MB, more than the sockets buffer and the few megabytes the
    service reads ahead: while the client holds the answer after its first part, the
    service has not read the whole study (its audit row, written when the stream ends,
    is not there yet); reading on finishes it."""
    study = _big_folder(database, tmp_path, "BIG")
    headers = {"Authorization": f"Token {people.token('boss')}"}
    with requests.get(f"{service.url}dicom-web/BIG/studies/{study}", headers=headers,
                      stream=True, timeout=60) as answer:  # fmt: skip
        assert answer.status_code == 200
        first = answer.raw.read(600_000)
        assert b"application/dicom" in first[:200]
        assert not _wado_rows(database)  # the service is still streaming: no end, no row
        rest = first + answer.raw.read()
    assert rest.count(b"Content-Type: application/dicom") == 40
    assert rest.rstrip().endswith(b"--")
    wait_until(lambda: len(_wado_rows(database)) == 1, timeout=10,
               what="the audit row of the finished stream")  # fmt: skip


def test_wado_a_client_leaves_midway_is_audited_as_aborted(
    service: Running, people: People, database: Database, tmp_path: Path
) -> None:
    """The service stops reading the study when the client hangs up after a part, and
    its audit row says so (not ``ok``, fewer instances than the study holds)."""
    study = _big_folder(database, tmp_path, "BIG2")
    headers = {"Authorization": f"Token {people.token('boss')}"}
    with requests.get(f"{service.url}dicom-web/BIG2/studies/{study}", headers=headers,
                      stream=True, timeout=60) as answer:  # fmt: skip
        assert answer.status_code == 200
        assert b"application/dicom" in answer.raw.read(600_000)[:200]
    wait_until(lambda: len(_wado_rows(database)) == 1, timeout=20,
               what="the audit row of the abandoned stream")  # fmt: skip
    row = _wado_rows(database)[0]
    assert row.outcome == "failed"
    assert row.details["aborted"] is True and row.details["status"] == 499
    assert row.details["count"] < 40


@pytest.mark.parametrize("node", NODES)
def test_the_dicomweb_client_command_searches_and_retrieves(
    service: Running, users: dict[str, str], originals: list[Dataset], tmp_path: Path, node: str
) -> None:
    """The dicomweb_client command line, unchanged, with a workbench token as bearer."""
    command = [
        str(Path(sys.executable).with_name("dicomweb_client")),
        "--url", f"{service.url}dicom-web/{node}", "--bearer-token", users["dora"],
    ]  # fmt: skip
    study = str(originals[0].StudyInstanceUID)
    found = subprocess.run([*command, "search", "studies"], capture_output=True, text=True,
                           timeout=120, check=True)  # fmt: skip
    assert study in found.stdout
    out = tmp_path / "cli"
    out.mkdir()
    retrieve = ["retrieve", "studies", "--study", study, "full", "--save", "--output-dir", str(out)]
    subprocess.run([*command, *retrieve], capture_output=True, timeout=120, check=True)
    saved = [pydicom.dcmread(p) for p in out.rglob("*") if p.is_file()]
    assert {str(ds.SOPInstanceUID) for ds in saved} == {str(ds.SOPInstanceUID) for ds in originals}
