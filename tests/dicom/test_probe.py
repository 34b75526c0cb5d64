"""probe() measures what a server supports: Orthanc with everything, without C-GET, etc."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adit_workbench.config import Settings
from adit_workbench.dicom.dicomweb import DicomWebNode
from adit_workbench.dicom.dimse import DimseNode
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.probe import summarize
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from tests.dicom.conftest import archive_datasets, folder_spec, server_spec
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.orthanc

ALL_FLAGS = dict.fromkeys(Capabilities.FLAGS, True)


def test_probe_orthanc_supports_everything(
    loaded_orthanc: OrthancServer, node_settings: Settings
) -> None:
    with open_node(server_spec(loaded_orthanc), node_settings) as node:  # type: ignore[attr-defined]
        caps = node.probe()
    print(summarize(caps))
    assert caps.as_flags() == ALL_FLAGS, caps.details
    assert caps.probed_at is not None
    assert caps.details["study_root_get"] == "ok (1 instance received)"
    assert caps.details["study_root_move"].startswith("ok (1 instance moved to ADIT_WB")


def test_probe_orthanc_without_get(
    orthanc_factory: Callable[..., OrthancServer],
    node_settings: Settings,
    receiver_ae: tuple[str, int],
) -> None:
    # We call as ADIT_WB, which must stay a known modality (the C-MOVE destination), so
    # C-GET is refused for it explicitly rather than through DicomAlwaysAllowGet alone.
    aet, port = receiver_ae
    workbench = {"AET": aet, "Host": "127.0.0.1", "Port": port, "AllowGet": False}
    server = orthanc_factory(DicomAlwaysAllowGet=False, DicomModalities={"workbench": workbench})
    server.upload(archive_datasets()[:2])
    # Orthanc aborts a refused C-GET, or sometimes just stops answering: keep that short.
    impatient = node_settings.model_copy(update={"dimse_timeout": 2.0, "network_timeout": 3.0})
    with open_node(server_spec(server), impatient) as node:  # type: ignore[attr-defined]
        caps = node.probe()
    print(summarize(caps))
    expected = {**ALL_FLAGS, "patient_root_get": False, "study_root_get": False}
    assert caps.as_flags() == expected, caps.details
    for flag in ("patient_root_get", "study_root_get"):
        assert "abort" in caps.details[flag] or "no response" in caps.details[flag]


def test_probe_reports_move_unsupported_for_an_unknown_destination(
    loaded_orthanc: OrthancServer, node_settings: Settings
) -> None:
    stranger = node_settings.model_copy(
        update={"ae_title": "STRANGER", "receiver_port": free_port()}
    )
    with DimseNode(server_spec(loaded_orthanc, dicomweb=False), stranger) as node:
        caps = node.probe()
    print(summarize(caps))
    assert not caps.patient_root_move and not caps.study_root_move
    assert "0xC000" in caps.details["study_root_move"]
    assert "STRANGER" in caps.details["study_root_move"]
    assert caps.study_root_get and caps.study_root_find and caps.echo


def test_probe_empty_server_assumes_from_answers(
    orthanc_factory: Callable[..., OrthancServer], node_settings: Settings
) -> None:
    server = orthanc_factory()
    with open_node(server_spec(server), node_settings) as node:  # type: ignore[attr-defined]
        caps = node.probe()
    print(summarize(caps))
    assert caps.echo and caps.study_root_find and caps.patient_root_find and caps.store
    assert caps.qido and caps.stow and caps.wado
    assert caps.details["wado"].startswith("assumed")
    # Orthanc answers 0xC000 for an unknown UID: without data C-GET cannot be verified.
    assert caps.details["study_root_get"].startswith("not verified")


def test_probe_unreachable_server(node_settings: Settings) -> None:
    spec = ServerSpec(
        name="GONE",
        ae_title="GONE",
        host="127.0.0.1",
        port=free_port(),
        dicomweb_root_url=f"http://127.0.0.1:{free_port()}/dicom-web",
    )
    with open_node(spec, node_settings) as node:  # type: ignore[attr-defined]
        caps = node.probe()
    assert not any(caps.as_flags().values())
    assert "cannot connect" in caps.details["echo"]
    assert "cannot connect" in caps.details["qido"]


def test_probe_dicomweb_only(loaded_orthanc: OrthancServer, node_settings: Settings) -> None:
    with DicomWebNode(server_spec(loaded_orthanc, dimse=False), node_settings) as node:
        caps = node.probe()
    assert (caps.qido, caps.wado, caps.stow) == (True, True, True)
    assert caps.details["wado"] == "ok (metadata of one instance)"
    assert loaded_orthanc.statistics()["CountInstances"] == len(archive_datasets())


def test_probe_dicomweb_wrong_root(loaded_orthanc: OrthancServer, node_settings: Settings) -> None:
    spec = server_spec(loaded_orthanc, dimse=False, dicomweb_root_url=f"{loaded_orthanc.url}/nope")
    with DicomWebNode(spec, node_settings) as node:
        caps = node.probe()
    assert (caps.qido, caps.wado, caps.stow) == (False, False, False)
    assert "HTTP 404" in caps.details["qido"]


def test_probe_folder(tmp_path: Path) -> None:
    caps = FolderNode(folder_spec(tmp_path)).probe()
    assert caps.study_root_find and caps.store and not caps.study_root_get
    missing = FolderNode(folder_spec(tmp_path / "missing")).probe()
    assert not missing.echo and not missing.store
