"""The DICOMweb node: QIDO through the raw-query session, errors, authorization."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator

import pytest
import requests
from pydicom import Dataset

from adit_workbench.config import Settings
from adit_workbench.dicom.dicomweb import DicomWebNode, _unescape_query, dataset_to_filters
from adit_workbench.dicom.nodelay import http_sets_nodelay
from adit_workbench.dicom.spec import ServerSpec
from adit_workbench.errors import DicomWebError, NodeTimeout, NodeUnreachable
from tests.dicom.conftest import archive_datasets, server_spec, study_query
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.orthanc

ALL = archive_datasets()


@pytest.fixture
def web(loaded_orthanc: OrthancServer, node_settings: Settings) -> Iterator[DicomWebNode]:
    with DicomWebNode(server_spec(loaded_orthanc, dimse=False), node_settings) as node:
        yield node


def test_filters_from_a_dataset() -> None:
    query = study_query(PatientID="NODE*", PatientName="DOE^JO*", StudyDate="20200101-")
    query.StudyInstanceUID = ["1.2.3", "1.2.4"]
    filters, fields = dataset_to_filters(query)
    assert filters == {
        "PatientID": "NODE*",
        "PatientName": "DOE*JO*",
        "StudyDate": "20200101-",
        "StudyInstanceUID": "1.2.3,1.2.4",
    }
    assert set(fields) == {"AccessionNumber", "ModalitiesInStudy"}


def test_unescape_only_wildcards_and_commas() -> None:
    assert _unescape_query("a=SYN%2A&b=1%2C2&c=%3F&d=%5E&e=%20") == "a=SYN*&b=1,2&c=?&d=%5E&e=%20"


def test_wildcards_are_sent_raw(web: DicomWebNode) -> None:
    sent: list[str] = []
    web.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.url))
    found = list(web.find("STUDY", study_query(PatientID="NODE000?")))
    assert len(found) == len({ds.StudyInstanceUID for ds in ALL})
    assert any("PatientID=NODE000?" in url for url in sent)


def test_uid_list_and_person_name(web: DicomWebNode) -> None:
    uids = sorted({str(ds.StudyInstanceUID) for ds in ALL})[:2]
    query = study_query()
    query.StudyInstanceUID = uids
    assert {str(ds.StudyInstanceUID) for ds in web.find("STUDY", query)} == set(uids)
    patient = ALL[0]
    by_name = web.find("STUDY", study_query(PatientName=str(patient.PatientName)))
    expected = {str(ds.StudyInstanceUID) for ds in ALL if ds.PatientID == patient.PatientID}
    assert {str(ds.StudyInstanceUID) for ds in by_name} == expected


def test_paging_streams_every_result(web: DicomWebNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adit_workbench.dicom.dicomweb.PAGE_SIZE", 5)
    query = Dataset()
    query.SOPInstanceUID = ""
    found = [str(ds.SOPInstanceUID) for ds in web.find("IMAGE", query)]
    assert sorted(found) == sorted(str(ds.SOPInstanceUID) for ds in ALL)
    assert len(list(web.find("IMAGE", query, limit=7))) == 7


def test_http_error_is_wrapped(loaded_orthanc: OrthancServer, node_settings: Settings) -> None:
    spec = server_spec(loaded_orthanc, dimse=False, dicomweb_root_url=f"{loaded_orthanc.url}/no")
    with DicomWebNode(spec, node_settings) as node, pytest.raises(DicomWebError) as info:
        list(node.find("STUDY", study_query()))
    error = info.value
    assert (error.http_status, error.node, error.operation) == (404, "ORTHANC1", "QIDO-RS")
    assert not error.retriable


def test_unreachable(node_settings: Settings) -> None:
    spec = ServerSpec(
        name="GONE", ae_title="", host="", port=0,
        dicomweb_root_url=f"http://127.0.0.1:{free_port()}/dicom-web",
    )  # fmt: skip
    with DicomWebNode(spec, node_settings) as node, pytest.raises(NodeUnreachable):
        node.echo()


def test_silent_server_times_out(node_settings: Settings) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        spec = ServerSpec(
            name="SILENT", ae_title="", host="", port=0,
            dicomweb_root_url=f"http://127.0.0.1:{port}/dicom-web",
        )  # fmt: skip
        quick = node_settings.model_copy(update={"http_timeout": 0.5})
        with DicomWebNode(spec, quick) as node, pytest.raises(NodeTimeout) as info:
            node.echo()
    assert info.value.retriable


def test_authorization_header_from_the_spec(
    orthanc_factory: Callable[..., OrthancServer], node_settings: Settings
) -> None:
    server = orthanc_factory(AuthenticationEnabled=True, RegisteredUsers={"wb": "s3cret"})
    with DicomWebNode(server_spec(server, dimse=False), node_settings) as anonymous:
        with pytest.raises(DicomWebError) as info:
            anonymous.echo()
        assert info.value.http_status == 401
    token = base64.b64encode(b"wb:s3cret").decode()
    spec = server_spec(server, dimse=False, dicomweb_authorization=f"Basic {token}")
    assert "s3cret" not in repr(spec) and token not in repr(spec)
    with DicomWebNode(spec, node_settings) as node:
        node.echo()
        assert list(node.find("STUDY", study_query())) == []


def test_requests_sets_tcp_nodelay() -> None:
    # urllib3 sets TCP_NODELAY itself; if that ever changes, HTTP needs our help too.
    assert http_sets_nodelay()
    assert requests.adapters.HTTPAdapter  # the adapter requests uses is urllib3's
