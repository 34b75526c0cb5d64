"""Upload: a local folder, pseudonymized, to a folder node and to a real Orthanc, on the
local workbench and through the service (``wb_for``: params ``local`` and ``remote``).

Each upload holds a malformed (cut) file and a text file, refused by name while the
rest go through; the output has no identifying value of the originals (leak scan), and
its UIDs are those a pseudonymized transfer of the same study with the same pseudonym
gives.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from click.testing import CliRunner
from pydicom import Dataset

from adit_workbench.access import Identity, IdentitySource, Permission, sign_in
from adit_workbench.deid.leaks import scan_leaks
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.errors import PermissionDenied
from adit_workbench.jobs import JobStatus
from adit_workbench.jobs.upload import UploadResult
from adit_workbench.sandbox.synthetic import iter_datasets
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from tests.servers.orthanc import OrthancServer
from tests.web.conftest import PATIENTS, People, Running

# The upload writes what every operation writes (audit rows, nodes): the database is
# not its subject, and tests/web/test_backends.py covers the service on PostgreSQL.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PSEUDONYM = "UPL-07"


def _originals(patient: str = "SYN0002", modality: str = "MR") -> list[Dataset]:
    """The sandbox's own instances of one study (the generator is deterministic)."""
    every = iter_datasets(patients=PATIENTS, seed=0, studies=2, series=2, instances=3,
                          modality="mixed")  # fmt: skip
    return [ds for ds in every if ds.PatientID == patient and ds.Modality == modality]


def _folder(root: Path, originals: list[Dataset]) -> Path:
    """The study as files (in two sub-folders), a cut copy of one, and a text file."""
    folder = root / "scans"
    for n, ds in enumerate(originals):
        path = folder / f"series{n % 2}" / f"img{n:02d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    whole = (folder / "series0" / "img00.dcm").read_bytes()
    (folder / "broken").mkdir()
    (folder / "broken" / "cut.dcm").write_bytes(whole[: len(whole) - 300])
    (folder / "notes.txt").write_text("not DICOM\n")
    return folder


@pytest.fixture
def uploader(people: People, database: Database, tmp_path: Path) -> str:
    """ula: may upload (and transfer) to the folder nodes UPL and OUT, read SANDBOX."""
    (tmp_path / "upl").mkdir()
    with database.session() as session:
        node_store.add_folder(session, FolderSpec("UPL", tmp_path / "upl"))
    identity = Identity("ula", IdentitySource.JUPYTERHUB, groups=("uploaders",))
    access = sign_in(database, identity, embedded=False)
    admin = people.admin.admin
    admin.grant("uploaders", "SANDBOX", source=True)
    for node in ("UPL", "OUT"):
        admin.grant("uploaders", node, destination=True)
    for permission in (Permission.REST_API, Permission.UPLOAD, Permission.SELECTIVE_TRANSFER):
        admin.add_permission("uploaders", permission)
    people.access["ula"] = access
    people.tokens["ula"] = access.tokens.create(expires=30).token
    return "ula"


def _check_refusals(result: UploadResult) -> None:
    refused = dict(result.refused)
    assert set(refused) == {"broken/cut.dcm", "notes.txt"}, result
    assert refused["broken/cut.dcm"].startswith("malformed:")
    assert refused["notes.txt"] == "not a DICOM file"
    assert "UploadResult NOT OK" in repr(result)
    assert "broken/cut.dcm" in result._repr_html_()


def test_upload_to_folder_matches_a_transfer(
    wb_for: Callable[[str], Any], uploader: str, tmp_path: Path
) -> None:
    wb = wb_for(uploader)
    originals = _originals()
    folder = _folder(tmp_path, originals)
    result = wb.upload(folder, destination="UPL", pseudonym=PSEUDONYM, trial_protocol_id="T9")
    assert isinstance(result, UploadResult)
    assert result.stored == len(originals) == 6
    _check_refusals(result)
    uploaded = sorted((tmp_path / "upl").rglob("*.dcm"))
    assert len(uploaded) == 6
    leaks = scan_leaks(originals, uploaded)
    assert leaks.clean, str(leaks)
    assert leaks.files_scanned == 6
    up = [pydicom.dcmread(p) for p in uploaded]
    assert {ds.PatientID for ds in up} == {PSEUDONYM}
    assert {ds.ClinicalTrialProtocolID for ds in up} == {"T9"}
    # The same study, transferred with the same pseudonym: the same UIDs and dates.
    hits = wb.node("SANDBOX").find_studies(patient_id="SYN0002", modality="MR")
    job = wb.transfer(hits, to="OUT", pseudonym=PSEUDONYM, trial_protocol_id="T9")
    assert job.wait(120, progress=False).status is JobStatus.SUCCESS
    moved = [pydicom.dcmread(p) for p in (tmp_path / "out").rglob("*.dcm")]
    assert len(moved) == 6

    def facts(items: list[Dataset]) -> set[tuple[str, ...]]:
        return {(str(d.StudyInstanceUID), str(d.SeriesInstanceUID), str(d.SOPInstanceUID),
                 str(d.get("StudyDate", "")), str(d.PatientID)) for d in items}  # fmt: skip

    assert facts(up) == facts(moved)
    assert not facts(up) & facts(originals)


def test_upload_to_orthanc_over_dimse_and_dicomweb(
    wb_for: Callable[[str], Any],
    uploader: str,
    people: People,
    database: Database,
    orthanc: OrthancServer,
    tmp_path: Path,
) -> None:
    orthanc.clear()
    caps = Capabilities(store=True, stow=True, qido=True, wado=True)
    with database.session() as session:
        node_store.add_server(session, ServerSpec(
            "ORTHANC1", orthanc.ae_title, orthanc.host, orthanc.dicom_port,
            dicomweb_root_url=orthanc.dicomweb_url, capabilities=caps,
        ))  # fmt: skip
    people.admin.admin.grant("uploaders", "ORTHANC1", destination=True)
    wb = wb_for(uploader)
    originals = _originals("SYN0001", "CT")
    folder = _folder(tmp_path, originals)
    by_dimse = wb.upload(folder, destination="ORTHANC1", pseudonym=PSEUDONYM, via="dimse")
    assert by_dimse.stored == 6
    _check_refusals(by_dimse)
    stored = orthanc.rest("GET", "/instances")
    assert len(stored) == 6
    orthanc.clear()
    by_web = wb.upload(folder, destination="ORTHANC1", pseudonym=PSEUDONYM, via="dicomweb")
    assert by_web.stored == 6
    _check_refusals(by_web)
    ids = orthanc.rest("GET", "/instances")
    assert len(ids) == 6
    files = tmp_path / "from-orthanc"
    files.mkdir()
    for n, oid in enumerate(ids):
        answer = orthanc._http.get(f"{orthanc.url}/instances/{oid}/file", timeout=30)
        (files / f"{n}.dcm").write_bytes(answer.content)
    back = sorted(files.glob("*.dcm"))
    assert scan_leaks(originals, back).clean
    patients = {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in back}
    assert patients == {PSEUDONYM}


def test_second_patient_refused_under_one_pseudonym(
    wb_for: Callable[[str], Any], uploader: str, tmp_path: Path
) -> None:
    wb = wb_for(uploader)
    folder = _folder(tmp_path, _originals("SYN0001", "CT")[:2])
    _originals("SYN0003", "CT")[0].save_as(
        folder / "series1" / "zz-other.dcm", enforce_file_format=True
    )
    result = wb.upload(folder, destination="UPL", pseudonym=PSEUDONYM)
    assert result.stored == 2
    assert dict(result.refused)["series1/zz-other.dcm"].startswith("another patient")


def test_upload_needs_the_permission_and_the_destination(
    wb_for: Callable[[str], Any], uploader: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, _originals()[:1])
    alice = wb_for("alice")  # every job permission, not upload
    with pytest.raises(PermissionDenied, match="upload"):
        alice.upload(folder, destination="OUT", pseudonym=PSEUDONYM)
    ula = wb_for(uploader)
    with pytest.raises(PermissionDenied):  # NodeAccessDenied: no destination role on OTHER
        ula.upload(folder, destination="OTHER", pseudonym=PSEUDONYM)
    assert not list((tmp_path / "other").rglob("*"))


def test_rest_refusals(service: Running, people: People, uploader: str) -> None:
    data = io.BytesIO()
    _originals()[0].save_as(data, enforce_file_format=True)
    files = [("files", ("a.dcm", data.getvalue(), "application/dicom"))]
    params = {"params": json.dumps({"destination": "UPL", "pseudonym": PSEUDONYM})}
    url = f"{service.url}api/uploads"
    alice = service.session(people.token("alice"))
    refused = alice.post(url, files=files, data=params, timeout=60)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "PermissionDenied"
    ula = service.session(people.token(uploader))
    assert ula.get(url, timeout=30).json()["max_request_bytes"] > 0
    wrong_type = ula.post(url, data=b"{}", headers={"Content-Type": "application/json"},
                          timeout=30)  # fmt: skip
    assert wrong_type.status_code == 415
    huge = ula.post(url, data=b"x" * (int(service.settings.max_request_mb * 1e6) + 10),
                    headers={"Content-Type": "multipart/form-data; boundary=b"},
                    timeout=60)  # fmt: skip
    assert huge.status_code == 413
    unknown = {"params": json.dumps({"destination": "UPL", "folder": "/etc"})}
    bad = ula.post(url, files=files, data=unknown, timeout=60)
    assert bad.status_code == 400 and "folder: unknown field" in bad.json()["message"]
    hidden = ula.post(url, files=files, data={"params": json.dumps({"destination": "OTHER"})},
                      timeout=60)  # fmt: skip
    assert hidden.status_code == 404  # a node ula may not use looks like no node at all
    ok = ula.post(url, files=files, data=params, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"destination": "UPL", "stored": 1, "warnings": 0, "refused": []}
    anonymous = requests.post(url, files=files, data=params, timeout=30)
    assert anonymous.status_code == 401


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    """A service body cap of 60 kB (set before the service reads its settings)."""
    monkeypatch.setenv("ADIT_WB_MAX_REQUEST_MB", "0.06")
    return 60_000


def test_remote_upload_splits_under_the_body_cap(
    small_cap: int, service: Running, people: People, uploader: str, tmp_path: Path
) -> None:
    from adit_workbench.remote import RemoteWorkbench

    originals = _originals()
    folder = _folder(tmp_path, originals)
    big = iter_datasets(patients=1, series=1, instances=1, rows=256, cols=256, pid_prefix="BIG")
    next(big).save_as(folder / "series1" / "big.dcm", enforce_file_format=True)
    assert (folder / "series1" / "big.dcm").stat().st_size > small_cap
    with RemoteWorkbench(service.url, people.token(uploader)) as wb:
        result = wb.upload(folder, destination="UPL", pseudonym=PSEUDONYM)
    assert result.stored == 6
    refused = dict(result.refused)
    assert set(refused) == {"broken/cut.dcm", "notes.txt", "series1/big.dcm"}
    assert refused["series1/big.dcm"].startswith("not sent:")
    rows = people.admin.admin.audit_events(user=uploader, action="upload")
    assert len(rows) >= 2  # one operation per request, each below the cap
    assert sum(int(r.details["stored"]) for r in rows) == 6


def test_cli_upload(
    uploader: str, people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adit_workbench.cli import _common, app

    folder = _folder(tmp_path, _originals()[:2])
    monkeypatch.setattr(_common, "_cached", lambda: _local(people, uploader))
    run = CliRunner().invoke(
        app, ["upload", str(folder), "--to", "UPL", "--pseudonym", PSEUDONYM],
        standalone_mode=False,
    )  # fmt: skip
    assert run.exception is None, run.output
    assert "UPL: 2 stored, 2 refused" in run.output
    assert "refused broken/cut.dcm: malformed" in run.output
    assert len(list((tmp_path / "upl").rglob("*.dcm"))) == 2


def _local(people: People, user: str) -> Any:
    from adit_workbench.config import get_settings
    from adit_workbench.workbench import Workbench

    return Workbench(get_settings(), people.database, people.access[user])
