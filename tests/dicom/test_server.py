"""The composite server: one node over DIMSE and DICOMweb, routed by via= or capabilities."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from adit_workbench.config import Settings
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import Capabilities
from adit_workbench.errors import InputError, NotSupported
from tests.dicom.conftest import server_spec, study_query
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.orthanc


@pytest.fixture
def both(loaded_orthanc: OrthancServer, node_settings: Settings) -> Iterator[DicomServer]:
    with DicomServer(server_spec(loaded_orthanc), node_settings) as server:
        yield server


def test_via_chooses_the_side(both: DicomServer) -> None:
    assert both.dimse is not None and both.dicomweb is not None
    with mock.patch.object(both.dicomweb, "find", wraps=both.dicomweb.find) as qido:
        dimse_hits = {
            str(d.StudyInstanceUID) for d in both.find("STUDY", study_query(), via="dimse")
        }
        assert not qido.called
        web_hits = {
            str(d.StudyInstanceUID) for d in both.find("STUDY", study_query(), via="dicomweb")
        }
        assert qido.called
    assert dimse_hits == web_hits and dimse_hits


def test_capabilities_route_to_qido_when_dimse_find_is_off(
    loaded_orthanc: OrthancServer, node_settings: Settings
) -> None:
    caps = Capabilities(study_root_find=False, qido=True)
    with DicomServer(server_spec(loaded_orthanc, capabilities=caps), node_settings) as server:
        assert server.dicomweb is not None
        with mock.patch.object(server.dicomweb, "find", wraps=server.dicomweb.find) as qido:
            assert list(server.find("STUDY", study_query(), limit=1))
            assert qido.called


def test_missing_side_and_bad_via(loaded_orthanc: OrthancServer, node_settings: Settings) -> None:
    with DicomServer(server_spec(loaded_orthanc, dicomweb=False), node_settings) as server:
        with pytest.raises(NotSupported):
            list(server.find("STUDY", study_query(), via="dicomweb"))
        with pytest.raises(InputError):
            list(server.find("STUDY", study_query(), via="carrier-pigeon"))
    with pytest.raises(InputError):
        DicomServer(server_spec(loaded_orthanc, dimse=False, dicomweb=False), node_settings)


def test_probe_of_a_dicomweb_only_server(
    loaded_orthanc: OrthancServer, node_settings: Settings
) -> None:
    with DicomServer(server_spec(loaded_orthanc, dimse=False), node_settings) as server:
        caps = server.probe()
    assert caps.echo and caps.qido and caps.wado and caps.stow
    assert not caps.study_root_find and not caps.study_root_get
    assert caps.details["echo"] == "ok (QIDO answered)"
    assert caps.details["study_root_get"] == "not configured"
