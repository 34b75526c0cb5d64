"""Fixtures for transfer tests: a tiny study in ORTHANC1, nodes, outputs to check."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyzipper
import stamina
from pydicom import Dataset, dcmread

from adit_workbench.config import Settings, get_settings
from adit_workbench.deid import LeakReport, Profile, Pseudonymizer, scan_leaks
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.sandbox.synthetic import iter_datasets
from tests.servers.orthanc import OrthancServer

#: 1 study x 2 series x 3 instances of 64x64: the whole matrix stays fast.
STUDY = {"patients": 1, "studies": 1, "series": 2, "instances": 3, "rows": 64, "cols": 64}
SECRET = b"transfer-tests-secret-0123456789"
ALL = Capabilities(
    study_root_get=True, study_root_move=True, store=True, qido=True, wado=True, stow=True
)


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    stamina.set_testing(True, attempts=2)
    yield
    stamina.set_testing(False)


def study_datasets(seed: int = 21) -> list[Dataset]:
    return list(iter_datasets(**STUDY, seed=seed, pid_prefix="TRF"))  # type: ignore[arg-type]


@pytest.fixture
def tsettings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, receiver_ae: tuple[str, int]
) -> Iterator[Settings]:
    """Settings whose AE title and receiver port are the ones the test Orthancs know."""
    ae_title, port = receiver_ae
    for key, value in {
        "AE_TITLE": ae_title,
        "RECEIVER_HOST": "127.0.0.1",
        "RECEIVER_PORT": str(port),
        "CONNECT_TIMEOUT": "3",
        "DIMSE_TIMEOUT": "10",
        "NETWORK_TIMEOUT": "10",
        "HTTP_TIMEOUT": "10",
    }.items():
        monkeypatch.setenv(f"ADIT_WB_{key}", value)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def spec_for(server: OrthancServer, **changes: object) -> ServerSpec:
    fields: dict[str, object] = {
        "name": server.name,
        "ae_title": server.ae_title,
        "host": server.host,
        "port": server.dicom_port,
        "dicomweb_root_url": server.dicomweb_url,
        "capabilities": ALL,
        "max_associations": 3,
    }
    fields.update(changes)
    return ServerSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def originals(orthanc_pair: tuple[OrthancServer, OrthancServer]) -> list[Dataset]:
    """The study, loaded once per module into ORTHANC1 (which holds nothing else)."""
    source = orthanc_pair[0]
    source.clear()
    datasets = study_datasets()
    source.upload(datasets)
    return datasets


@pytest.fixture
def study_uid(originals: list[Dataset]) -> str:
    return str(originals[0].StudyInstanceUID)


@pytest.fixture
def source(orthanc: OrthancServer, tsettings: Settings) -> Iterator[DicomServer]:
    node = DicomServer(spec_for(orthanc), tsettings)
    yield node
    node.close()


@pytest.fixture
def destination(orthanc2: OrthancServer, tsettings: Settings) -> Iterator[DicomServer]:
    orthanc2.clear()
    node = DicomServer(spec_for(orthanc2), tsettings)
    yield node
    node.close()


@pytest.fixture
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(SECRET, Profile.adit("SUBJ-01", trial_id="T1", trial_name="Trial"))


def dicom_files(root: Path) -> list[Path]:
    """Delivered files: every .dcm below ``root`` outside hidden (staging) folders."""
    return sorted(
        p for p in root.rglob("*.dcm") if not any(part.startswith(".") for part in p.parts[-6:])
    )


def zip_datasets(path: Path, password: str, out: Path) -> list[Path]:
    """Extract an AES archive's DICOM entries to ``out`` (checks the password works)."""
    paths = []
    with pyzipper.AESZipFile(path) as archive:
        archive.setpassword(password.encode())
        for name in archive.namelist():
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
            paths.append(target)
    return paths


def server_files(server: OrthancServer, out: Path) -> list[Path]:
    """Every instance a test Orthanc holds, downloaded to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for instance in server.rest("GET", "/instances"):
        data = server._http.get(f"{server.url}/instances/{instance}/file", timeout=30).content
        ds = dcmread(io.BytesIO(data))
        path = out / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def leaks(originals: list[Dataset], outputs: list[Path], root: Path | None = None) -> LeakReport:
    """Leak report of outputs; the ADIT profile keeps study dates on purpose."""
    return scan_leaks(originals, outputs, ignore=("date",), output_root=root)
