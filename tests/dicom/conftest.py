"""Fixtures for the node layer: settings wired to the test receiver, loaded archives, fakes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.events import Event

from adit_workbench.config import Settings, get_settings
from adit_workbench.dicom.association import QR_MODELS, VERIFICATION
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.sandbox.synthetic import generate, iter_datasets
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer

#: The archive the node tests load: 3 patients x 2 studies x 2 series x 2 instances.
ARCHIVE = {"patients": 3, "studies": 2, "series": 2, "instances": 2, "modality": "mixed"}
ARCHIVE_SEED = 11
PID_PREFIX = "NODE"


def archive_datasets() -> list[Dataset]:
    return list(iter_datasets(**ARCHIVE, seed=ARCHIVE_SEED, pid_prefix=PID_PREFIX))  # type: ignore[arg-type]


@pytest.fixture
def node_settings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, receiver_ae: tuple[str, int]
) -> Iterator[Settings]:
    """Settings whose AE title and receiver port are the ones the test Orthancs know."""
    ae_title, port = receiver_ae
    monkeypatch.setenv("ADIT_WB_AE_TITLE", ae_title)
    monkeypatch.setenv("ADIT_WB_RECEIVER_HOST", "127.0.0.1")
    monkeypatch.setenv("ADIT_WB_RECEIVER_PORT", str(port))
    monkeypatch.setenv("ADIT_WB_CONNECT_TIMEOUT", "3")
    monkeypatch.setenv("ADIT_WB_DIMSE_TIMEOUT", "10")
    monkeypatch.setenv("ADIT_WB_NETWORK_TIMEOUT", "10")
    monkeypatch.setenv("ADIT_WB_HTTP_TIMEOUT", "10")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def server_spec(
    server: OrthancServer,
    *,
    dimse: bool = True,
    dicomweb: bool = True,
    capabilities: Capabilities | None = None,
    **changes: Any,
) -> ServerSpec:
    """A ServerSpec for a test Orthanc (DIMSE and/or DICOMweb)."""
    fields: dict[str, Any] = {
        "name": server.name,
        "ae_title": server.ae_title if dimse else "",
        "host": server.host if dimse else "",
        "port": server.dicom_port if dimse else 0,
        "dicomweb_root_url": server.dicomweb_url if dicomweb else None,
        "capabilities": capabilities or Capabilities(),
    }
    fields.update(changes)
    return ServerSpec(**fields)


@pytest.fixture(scope="module")
def loaded_orthanc(orthanc_pair: tuple[OrthancServer, OrthancServer]) -> OrthancServer:
    """ORTHANC1 holding exactly the test archive (loaded once per module)."""
    server = orthanc_pair[0]
    server.clear()
    server.upload(archive_datasets())
    return server


@pytest.fixture(scope="module")
def archive_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same archive as files in a folder."""
    folder = tmp_path_factory.mktemp("archive")
    generate(folder, **ARCHIVE, seed=ARCHIVE_SEED, pid_prefix=PID_PREFIX)  # type: ignore[arg-type]
    return folder


def folder_spec(path: Path, name: str = "FOLDER") -> FolderSpec:
    return FolderSpec(name=name, path=path)


# -- a scriptable C-FIND SCP -----------------------------------------------------------
@dataclass
class FakeScp:
    """A pynetdicom Q/R SCP whose C-FIND behaviour each test sets."""

    port: int
    ae_title: str = "FAKE"
    matches: int = 100
    delay: float = 0.0
    final_status: int = 0x0000
    cancelled: list[bool] = field(default_factory=list)
    open_now: int = 0
    open_max: int = 0
    associations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: Any = None

    def handle_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        for index in range(self.matches):
            if event.is_cancelled:
                self.cancelled.append(True)
                yield 0xFE00, None
                return
            if self.delay:
                time.sleep(self.delay)
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = f"1.2.3.{index + 1}"
            yield 0xFF00, ds
        yield self.final_status, None

    def on_open(self, event: Event) -> None:
        with self.lock:
            self.associations += 1
            self.open_now += 1
            self.open_max = max(self.open_max, self.open_now)

    def on_close(self, event: Event) -> None:
        with self.lock:
            self.open_now -= 1

    def spec(self, **changes: Any) -> ServerSpec:
        return ServerSpec(
            name="FAKE", ae_title=self.ae_title, host="127.0.0.1", port=self.port, **changes
        )


@pytest.fixture
def fake_scp() -> Iterator[FakeScp]:
    """A running fake C-FIND/C-ECHO SCP on a free port."""
    fake = FakeScp(port=free_port())
    ae = AE(ae_title=fake.ae_title)
    ae.add_supported_context(VERIFICATION)
    for root in ("study", "patient"):
        ae.add_supported_context(QR_MODELS[root, "find"])
    handlers: list[tuple[Any, Callable[..., Any]]] = [
        (evt.EVT_C_FIND, fake.handle_find),
        (evt.EVT_ESTABLISHED, fake.on_open),
        (evt.EVT_RELEASED, fake.on_close),
        (evt.EVT_ABORTED, fake.on_close),
    ]
    fake.server = ae.start_server(("127.0.0.1", fake.port), block=False, evt_handlers=handlers)
    yield fake
    fake.server.shutdown()


def study_query(**values: Any) -> Dataset:
    """A STUDY-level query with the usual return keys (values given become matching keys)."""
    query = Dataset()
    for keyword in (
        "PatientID",
        "PatientName",
        "StudyInstanceUID",
        "StudyDate",
        "AccessionNumber",
        "ModalitiesInStudy",
    ):
        setattr(query, keyword, "")
    for keyword, value in values.items():
        setattr(query, keyword, value)
    return query
