"""Real Orthanc servers for tests: two session-wide instances and a factory for extras.

Each instance runs Debian's ``/usr/sbin/Orthanc`` with the DICOMweb plugin in a temporary
folder, on free ports chosen at run time, with ``TCP_NODELAY=1`` in its environment
(DCMTK leaves Nagle on otherwise and every DIMSE message stalls ~40 ms).

Fixtures
--------
``receiver_ae``      session: ``(ae_title, port)`` of the workbench's Store SCP in tests
``orthanc_pair``     session: ``(ORTHANC1, ORTHANC2)``, each knowing the other and the receiver
``orthanc``          ORTHANC1
``orthanc2``         ORTHANC2
``orthanc_factory``  function: ``orthanc_factory(**config_overrides) -> OrthancServer``

``NO_TRANSCODING`` is the override for an Orthanc that behaves like many clinical PACS:
it sends an instance over DICOM only in the transfer syntax it is stored in (Orthanc
transcodes by default), so a compressed or private one arrives only if negotiated:
``orthanc_factory(**NO_TRANSCODING)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom import Dataset, dcmwrite
from pydicom.filebase import DicomBytesIO
from urllib3.util.retry import Retry

from tests.servers._util import free_port, require, wait_until

ORTHANC_BIN = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
INSTALL_HINT = "the Debian packages orthanc and orthanc-dicomweb (apt-get install -y ...)"
HOST = "127.0.0.1"
NO_TRANSCODING: dict[str, Any] = {"TranscodeDicomProtocol": False}


class OrthancServer:
    """One Orthanc process on loopback, configured for tests.

    ``modalities`` maps a symbolic name to ``(AET, port)`` on 127.0.0.1: the C-MOVE
    destinations this instance can reach. ``overrides`` are top-level config keys.
    """

    def __init__(
        self,
        name: str,
        base_dir: Path,
        *,
        http_port: int | None = None,
        dicom_port: int | None = None,
        modalities: dict[str, tuple[str, int]] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.ae_title = name
        self.host = HOST
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.dir = base_dir / name.lower()
        self.modalities = dict(modalities or {})
        self.overrides = dict(overrides or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._http = requests.Session()
        # Orthanc closes an idle keep-alive connection after a second; a request sent on it
        # at that moment ends in RemoteDisconnected. The helpers' calls are all safe to
        # repeat (GET, DELETE, and uploads Orthanc stores once), so retry them.
        self._http.mount(
            "http://",
            requests.adapters.HTTPAdapter(
                max_retries=Retry(total=3, backoff_factor=0.1, allowed_methods=None)
            ),
        )
        users = self.overrides.get("RegisteredUsers") or {}
        if self.overrides.get("AuthenticationEnabled") and users:
            # The helpers (clear, upload, statistics) log in as the first user.
            self._http.auth = next(iter(users.items()))

    # -- addresses ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        """REST base URL, without trailing slash."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root, without trailing slash."""
        return f"{self.url}/dicom-web"

    def __repr__(self) -> str:
        return f"OrthancServer({self.name}, dicom={self.dicom_port}, http={self.http_port})"

    # -- life cycle --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        db = self.dir / "db"
        cfg: dict[str, Any] = {
            "Name": self.name,
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "StorageCompression": False,
            # Throwaway stores: an fdatasync per instance buys nothing here.
            "SyncStorageArea": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpDescribeErrors": True,
            "HttpCompressionEnabled": False,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "OrthancExplorerEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowFindWorklist": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "UnknownSopClassAccepted": True,
            "DicomScpTimeout": 30,
            "DicomScuTimeout": 10,
            # Orthanc keeps outgoing (C-MOVE) associations open this long; short keeps
            # the test receiver from holding threads after a move.
            "DicomAssociationCloseDelay": 0,
            "SynchronousCMove": True,
            "DicomModalitiesInDatabase": False,
            "DicomModalities": {
                key: {"AET": aet, "Host": HOST, "Port": port}
                for key, (aet, port) in self.modalities.items()
            },
            "OverwriteInstances": True,
            "SaveJobs": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "Host": f"{HOST}:{self.http_port}",
                "Ssl": False,
            },
        }
        cfg.update(self.overrides)
        return cfg

    def start(self, timeout: float = 15) -> OrthancServer:
        """Write the config, start the process and wait for ``GET /system``."""
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        cfg_path = self.dir / "orthanc.json"
        cfg_path.write_text(json.dumps(self.config(), indent=2))
        log = self.dir / "logs" / "stdout.log"
        env = {**os.environ, "TCP_NODELAY": "1"}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [ORTHANC_BIN, f"--logdir={self.dir / 'logs'}", str(cfg_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        wait_until(
            lambda: self._http.get(f"{self.url}/system", timeout=1).ok,
            timeout,
            f"Orthanc {self.name}",
            proc=self.proc,
            log=log,
        )
        return self

    def terminate(self) -> None:
        """Send SIGTERM without waiting (see :meth:`wait_stopped`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 20) -> None:
        """Wait for the process to end; SIGKILL it after ``timeout`` seconds."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._http.close()

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, wait, then SIGKILL."""
        self.terminate()
        self.wait_stopped(timeout)

    # -- REST helpers ------------------------------------------------------------------
    def rest(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call; raises on an HTTP error, returns the decoded JSON (or None)."""
        response = self._http.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def clear(self) -> None:
        """Delete every patient (and so every study, series and instance)."""
        for patient in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{patient}")

    def upload(self, items: Iterable[str | os.PathLike[str] | Dataset]) -> list[str]:
        """POST each file or dataset to ``/instances``; return Orthanc's instance ids."""
        ids = []
        for item in items:
            if isinstance(item, Dataset):
                buffer = DicomBytesIO()
                dcmwrite(buffer, item, enforce_file_format=True)
                data = buffer.getvalue()
            else:
                data = Path(item).read_bytes()
            answer = self.rest(
                "POST", "/instances", data=data, headers={"Content-Type": "application/dicom"}
            )
            ids.append(answer["ID"])
        return ids

    def statistics(self) -> dict[str, Any]:
        """``GET /statistics``: CountPatients, CountStudies, CountSeries, CountInstances …"""
        result: dict[str, Any] = self.rest("GET", "/statistics")
        return result


def _start_all(servers: list[OrthancServer]) -> None:
    """Start several instances at once so that start-up costs one wait, not several."""
    for server in servers:
        server.dir.mkdir(parents=True, exist_ok=True)
    started: list[OrthancServer] = []
    try:
        for server in servers:
            server.start()
            started.append(server)
    except BaseException:
        _stop_all(started)
        raise


def _stop_all(servers: Iterable[OrthancServer]) -> None:
    servers = list(servers)
    for server in servers:
        server.terminate()
    for server in servers:
        server.wait_stopped()


@pytest.fixture(scope="session")
def receiver_ae() -> tuple[str, int]:
    """AE title and port of the workbench's own Store SCP (C-MOVE destination) in tests."""
    return ("ADIT_WB", free_port())


@pytest.fixture(scope="session")
def _orthanc_base() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wb-orthanc-") as base:
        yield Path(base)


@pytest.fixture(scope="session")
def _orthanc_reaper() -> Iterator[list[OrthancServer]]:
    """Instances that were sent SIGTERM mid-session; waited for once, at session end."""
    dying: list[OrthancServer] = []
    yield dying
    for server in dying:
        server.wait_stopped()


@pytest.fixture(scope="session")
def orthanc_pair(
    _orthanc_base: Path, receiver_ae: tuple[str, int]
) -> Iterator[tuple[OrthancServer, OrthancServer]]:
    """ORTHANC1 and ORTHANC2, each a known C-MOVE destination of the other."""
    require(ORTHANC_BIN, INSTALL_HINT)
    if not Path(DICOMWEB_PLUGIN).exists():  # a library, not an executable: require() skips/fails
        require(DICOMWEB_PLUGIN, INSTALL_HINT)
    one = OrthancServer("ORTHANC1", _orthanc_base)
    two = OrthancServer("ORTHANC2", _orthanc_base)
    known = {
        "orthanc1": (one.ae_title, one.dicom_port),
        "orthanc2": (two.ae_title, two.dicom_port),
        "workbench": receiver_ae,
    }
    one.modalities = dict(known)
    two.modalities = dict(known)
    _start_all([one, two])
    yield one, two
    _stop_all([one, two])


@pytest.fixture
def orthanc(orthanc_pair: tuple[OrthancServer, OrthancServer]) -> OrthancServer:
    """ORTHANC1 (shared by the session: tests clear or upload what they need)."""
    return orthanc_pair[0]


@pytest.fixture
def orthanc2(orthanc_pair: tuple[OrthancServer, OrthancServer]) -> OrthancServer:
    """ORTHANC2 (shared by the session)."""
    return orthanc_pair[1]


@pytest.fixture
def orthanc_factory(
    _orthanc_base: Path,
    _orthanc_reaper: list[OrthancServer],
    receiver_ae: tuple[str, int],
    orthanc_pair: tuple[OrthancServer, OrthancServer],
) -> Iterator[Callable[..., OrthancServer]]:
    """Start extra instances for one test: ``orthanc_factory(DicomAlwaysAllowGet=False)``.

    The extra instance knows ORTHANC1, ORTHANC2 and the receiver as modalities. It gets
    SIGTERM when the test ends; the (slow, ~3 s) wait for its exit happens at session end.
    """
    one, two = orthanc_pair
    made: list[OrthancServer] = []

    def make(**overrides: Any) -> OrthancServer:
        name = f"EXTRA{len(made) + 1}_{int(time.monotonic() * 1000) % 100000}"
        server = OrthancServer(
            name,
            _orthanc_base,
            modalities={
                "orthanc1": (one.ae_title, one.dicom_port),
                "orthanc2": (two.ae_title, two.dicom_port),
                "workbench": receiver_ae,
            },
            overrides=overrides,
        )
        made.append(server)
        server.start()
        return server

    yield make
    for server in made:
        server.terminate()
        _orthanc_reaper.append(server)
