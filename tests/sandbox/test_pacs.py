"""SandboxPacs over real loopback associations, pynetdicom as the SCU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from adit_workbench.sandbox.pacs import (
    PatientRootQueryRetrieveInformationModelFind,
    SandboxPacs,
    StudyRootQueryRetrieveInformationModelFind,
)
from adit_workbench.sandbox.synthetic import generate, iter_datasets

from .conftest import PATIENTS, Scu, store_scp

SEEDED = list(iter_datasets(patients=PATIENTS, studies=2, series=2, instances=3, modality="mixed"))
STUDIES = {ds.StudyInstanceUID: ds for ds in SEEDED}


def test_echo(scu: Scu) -> None:
    assert scu.echo() == 0x0000


def test_counts_after_seed(pacs: SandboxPacs) -> None:
    assert pacs.count() == {"patients": 3, "studies": 6, "series": 12, "instances": 36}
    assert pacs.seed(5) == 0  # only an empty archive is seeded


@pytest.mark.parametrize("patient_root", [True, False])
def test_find_patients_with_wildcards(scu: Scu, patient_root: bool) -> None:
    if not patient_root:
        _, status = scu.find_status(
            {"QueryRetrieveLevel": "PATIENT", "PatientID": ""},
            StudyRootQueryRetrieveInformationModelFind,
        )
        assert status == 0xA900  # Study Root has no PATIENT level
        return
    found = scu.find(
        {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN000?", "PatientName": "",
         "NumberOfPatientRelatedStudies": ""},
        patient_root=True,
    )  # fmt: skip
    assert sorted(ds.PatientID for ds in found) == ["SYN0001", "SYN0002", "SYN0003"]
    assert all(ds.NumberOfPatientRelatedStudies == 2 for ds in found)
    name = str(SEEDED[0].PatientName)
    lower = name.split("^")[0].lower() + "*"
    hit = scu.find({"QueryRetrieveLevel": "PATIENT", "PatientName": lower}, patient_root=True)
    assert [ds.PatientID for ds in hit] == ["SYN0001"]
    assert "StudyInstanceUID" not in hit[0]


@pytest.mark.parametrize("patient_root", [True, False])
def test_find_studies_keys_and_counts(scu: Scu, patient_root: bool) -> None:
    found = scu.find(
        {"QueryRetrieveLevel": "STUDY", "PatientID": "SYN0002", "StudyInstanceUID": "",
         "StudyDate": "", "AccessionNumber": "", "ModalitiesInStudy": "",
         "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": "",
         "StudyDescription": "", "BodyPartExamined": ""},
        patient_root=patient_root,
    )  # fmt: skip
    assert len(found) == 2
    for ds in found:
        seeded = STUDIES[ds.StudyInstanceUID]
        assert ds.PatientID == "SYN0002"
        assert ds.QueryRetrieveLevel == "STUDY"
        assert ds.StudyDate == seeded.StudyDate
        assert ds.AccessionNumber == seeded.AccessionNumber
        assert ds.ModalitiesInStudy == seeded.Modality
        assert ds.NumberOfStudyRelatedSeries == 2
        assert ds.NumberOfStudyRelatedInstances == 6
        assert ds.BodyPartExamined == ""  # a series attribute: asked for, returned empty
        assert "PatientBirthDate" not in ds  # only what was asked, plus level keys


def test_find_studies_by_date_range_and_modality(scu: Scu) -> None:
    dates = sorted({ds.StudyDate for ds in SEEDED})
    low, high = dates[1], dates[-2]
    expected = {ds.StudyInstanceUID for ds in SEEDED if low <= ds.StudyDate <= high}
    for query, want in (
        (f"{low}-{high}", expected),
        (f"{low}-", {u for u, ds in STUDIES.items() if ds.StudyDate >= low}),
        (f"-{high}", {u for u, ds in STUDIES.items() if ds.StudyDate <= high}),
        (dates[0], {u for u, ds in STUDIES.items() if ds.StudyDate == dates[0]}),
    ):
        found = scu.find({"QueryRetrieveLevel": "STUDY", "StudyDate": query})
        assert {ds.StudyInstanceUID for ds in found} == want, query
        assert all("PatientID" not in ds for ds in found)  # Study Root adds no PatientID
    mr = scu.find({"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": "MR", "PatientID": ""})
    assert len(mr) == 3 and all(ds.ModalitiesInStudy == "MR" for ds in mr)
    both = scu.find({"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": ["CT", "MR"]})
    assert len(both) == 6
    pair = list(STUDIES)[:2]
    by_list = scu.find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": pair})
    assert {ds.StudyInstanceUID for ds in by_list} == set(pair)
    time_range = scu.find({"QueryRetrieveLevel": "STUDY", "StudyTime": "0000-2359"})
    assert len(time_range) == 6


# Wildcards in CS and UI keys are valid queries, though pydicom warns about them as values.
_WILDCARD_VALUES = pytest.mark.filterwarnings("ignore:Invalid value for VR")


@_WILDCARD_VALUES
@pytest.mark.parametrize("patient_root", [True, False])
def test_find_series_and_images(scu: Scu, patient_root: bool) -> None:
    study = SEEDED[0]
    series = scu.find(
        {"QueryRetrieveLevel": "SERIES", "PatientID": study.PatientID,
         "StudyInstanceUID": study.StudyInstanceUID, "SeriesInstanceUID": "", "Modality": "",
         "SeriesDescription": "", "NumberOfSeriesRelatedInstances": "", "SeriesNumber": ""},
        patient_root=patient_root,
    )  # fmt: skip
    assert len(series) == 2
    assert {ds.Modality for ds in series} == {study.Modality}
    assert all(ds.NumberOfSeriesRelatedInstances == 3 for ds in series)
    assert all(ds.StudyInstanceUID == study.StudyInstanceUID for ds in series)
    assert ("PatientID" in series[0]) is True
    images = scu.find(
        {"QueryRetrieveLevel": "IMAGE", "PatientID": study.PatientID,
         "StudyInstanceUID": study.StudyInstanceUID,
         "SeriesInstanceUID": study.SeriesInstanceUID, "SOPInstanceUID": "",
         "InstanceNumber": "", "SOPClassUID": ""},
        patient_root=patient_root,
    )  # fmt: skip
    assert sorted(int(ds.InstanceNumber) for ds in images) == [1, 2, 3]
    assert all(ds.SOPClassUID == study.SOPClassUID for ds in images)
    assert all(ds.SeriesInstanceUID == study.SeriesInstanceUID for ds in images)
    desc = scu.find({"QueryRetrieveLevel": "SERIES", "SeriesDescription": "*", "Modality": "C?"})
    assert len(desc) == 6


def test_find_with_bad_level_fails(scu: Scu) -> None:
    _, status = scu.find_status(
        {"QueryRetrieveLevel": "FRAME"}, PatientRootQueryRetrieveInformationModelFind
    )
    assert status == 0xA900


def test_get_series_over_the_same_association(scu: Scu) -> None:
    target = SEEDED[3]
    status, received = scu.get(
        {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": target.StudyInstanceUID,
         "SeriesInstanceUID": target.SeriesInstanceUID}
    )  # fmt: skip
    assert status == 0x0000
    assert sorted(ds.SOPInstanceUID for ds in received) == sorted(
        ds.SOPInstanceUID for ds in SEEDED if ds.SeriesInstanceUID == target.SeriesInstanceUID
    )
    assert received[0].PixelData == next(
        ds.PixelData for ds in SEEDED if ds.SOPInstanceUID == received[0].SOPInstanceUID
    )
    status, received = scu.get(
        {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN0003"}, patient_root=True
    )
    assert status == 0x0000 and len(received) == 12


@_WILDCARD_VALUES
def test_get_without_unique_key_fails(scu: Scu) -> None:
    status, received = scu.get({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "*"})
    assert status == 0xA900 and not received


def test_get_refused_when_switched_off(tmp_path: Path) -> None:
    with SandboxPacs(tmp_path, allow_get=False, allow_patient_root=False) as pacs:
        pacs.seed(1)
        scu = Scu(pacs)
        status, received = scu.get(
            {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": SEEDED[0].StudyInstanceUID}
        )
        assert status == 0x0124 and not received
        assert len(scu.find({"QueryRetrieveLevel": "STUDY"})) == 2
        with pytest.raises(AssertionError):  # patient root context rejected: find aborts
            scu.find({"QueryRetrieveLevel": "PATIENT"}, patient_root=True)


def test_move_to_known_peer_and_unknown_peer(pacs: SandboxPacs, scu: Scu) -> None:
    received: list[Dataset] = []
    server = store_scp(received)
    try:
        pacs.peers["RECEIVER"] = ("127.0.0.1", server.server_address[1])
        study = SEEDED[0].StudyInstanceUID
        status, _ = scu.move({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}, "RECEIVER")
        assert status == 0x0000
        assert len(received) == 6 and {ds.StudyInstanceUID for ds in received} == {study}
        status, _ = scu.move(
            {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN0002"}, "RECEIVER", patient_root=True
        )
        assert status == 0x0000 and len(received) == 18
    finally:
        server.shutdown()
        pacs.peers.pop("RECEIVER", None)
    status, _ = scu.move(
        {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": SEEDED[0].StudyInstanceUID}, "NOBODY"
    )
    assert status == 0xA801


def test_move_refused_when_switched_off(tmp_path: Path) -> None:
    with SandboxPacs(tmp_path, allow_move=False, peers={"X": ("127.0.0.1", 9)}) as pacs:
        pacs.seed(1)
        status, _ = Scu(pacs).move(
            {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": SEEDED[0].StudyInstanceUID}, "X"
        )
        assert 0xC000 <= status <= 0xCFFF


def test_move_peers_file_is_reread(tmp_path: Path) -> None:
    received: list[Dataset] = []
    server = store_scp(received, "LATE")
    peers_file = tmp_path / "peers.json"
    try:
        with SandboxPacs(tmp_path / "a", peers_file=peers_file) as pacs:
            pacs.seed(1, series=1, instances=2, studies=1)
            query = {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN0001"}
            assert Scu(pacs).move(query, "LATE", patient_root=True)[0] == 0xA801
            port = server.server_address[1]
            peers_file.write_text(f'{{"peers": {{"LATE": ["127.0.0.1", {port}]}}}}')
            assert Scu(pacs).move(query, "LATE", patient_root=True)[0] == 0x0000
            assert len(received) == 2
    finally:
        server.shutdown()


def test_store_then_find_and_persisted_index(tmp_path: Path) -> None:
    from pynetdicom import AE

    files = generate(tmp_path / "src", patients=1, series=1, instances=2, pid_prefix="STO")
    with SandboxPacs(tmp_path / "pacs") as pacs:
        ae = AE(ae_title="STORESCU")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")
        assoc = ae.associate("127.0.0.1", pacs.port, ae_title="SANDBOX")
        assert assoc.is_established
        try:
            statuses = [assoc.send_c_store(path).Status for path in files]
        finally:
            assoc.release()
        assert statuses == [0, 0]
        found = Scu(pacs).find({"QueryRetrieveLevel": "IMAGE", "PatientID": "STO0001"})
        assert len(found) == 2
    # A restart reads the index, not the files; deleting the index rebuilds it.
    with SandboxPacs(tmp_path / "pacs") as again:
        assert again.count()["instances"] == 2
    (tmp_path / "pacs" / "index.sqlite3").unlink()
    for extra in (tmp_path / "pacs").glob("index.sqlite3-*"):
        extra.unlink()
    with SandboxPacs(tmp_path / "pacs") as rebuilt:
        assert rebuilt.count() == {"patients": 1, "studies": 1, "series": 1, "instances": 2}
        path = rebuilt.add_file(files[0])
        assert path.exists() and rebuilt.count()["instances"] == 2


def test_stop_then_start_again(tmp_path: Path) -> None:
    pacs = SandboxPacs(tmp_path).start()
    try:
        pacs.seed(1, studies=1, series=1, instances=1)
        pacs.stop()
        assert not pacs.running and pacs.count()["instances"] == 1
        pacs.start()
        assert Scu(pacs).echo() == 0
    finally:
        pacs.close()
    assert pacs.count()["instances"] == 1  # the archive reopens on demand
    pacs.close()


def _nodelay(assoc: Any) -> bool:
    import socket

    return bool(assoc.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_server_sockets_have_nodelay(pacs: SandboxPacs) -> None:
    from pynetdicom import AE

    from adit_workbench.sandbox.pacs import Verification

    ae = AE(ae_title="NAGLE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", pacs.port, ae_title=pacs.ae_title)
    try:
        server: Any = pacs._server
        assert _nodelay(assoc)
        assert server.active_associations
        assert all(_nodelay(a) for a in server.active_associations)
    finally:
        assoc.release()
