"""``adit-workbench nodes`` and ``sandbox`` end to end: real Orthancs, the real sandbox.

These are the commands scripts rely on, so their output and exit codes are checked as
a script would see them: 0 on success, 2 with one line for bad input, 1 with one line
for an operation that failed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adit_workbench.cli import _common, main
from adit_workbench.config import get_settings
from adit_workbench.sandbox.synthetic import iter_datasets
from tests.servers._util import free_port
from tests.servers.orthanc import OrthancServer


@pytest.fixture
def cli(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver_ae: tuple[str, int],
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """Run one CLI command in a fresh embedded workbench; returns (code, stdout, stderr)."""
    ae_title, port = receiver_ae
    monkeypatch.setenv("ADIT_WB_AE_TITLE", ae_title)
    monkeypatch.setenv("ADIT_WB_RECEIVER_PORT", str(port))
    monkeypatch.setenv("ADIT_WB_SANDBOX_PORT", str(free_port()))
    monkeypatch.setenv("ADIT_WB_SANDBOX_PATIENTS", "2")
    monkeypatch.setenv("ADIT_WB_DIMSE_TIMEOUT", "5")
    get_settings.cache_clear()

    def run(*args: str) -> tuple[int, str, str]:
        _common.reset()  # each command is its own CLI run, as in a shell
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    _common.reset()


def _probe_lines(out: str) -> dict[str, str]:
    rows = [line.split(None, 2) for line in out.splitlines()[1:]]
    return {row[0]: row[1] for row in rows}


@pytest.fixture
def loaded(orthanc: OrthancServer) -> OrthancServer:
    orthanc.clear()
    orthanc.upload(iter_datasets(patients=1, studies=1, series=1, instances=2, seed=3))
    return orthanc


def test_register_echo_probe_remove_against_orthanc(
    cli: Callable[..., tuple[int, str, str]], loaded: OrthancServer
) -> None:
    add = ["nodes", "add-server", "PACS", "--ae", loaded.ae_title, "--host", "127.0.0.1"]
    code, out, _ = cli(*add, "--port", str(loaded.dicom_port), "--dicomweb", loaded.dicomweb_url)
    assert code == 0 and "added server PACS" in out

    code, out, _ = cli("nodes", "echo", "PACS")
    assert code == 0 and out.startswith("PACS: echo ok")

    code, out, err = cli("nodes", "probe", "PACS")
    assert code == 0, err
    found = _probe_lines(out)
    assert found == {
        "echo": "yes",
        "patient_root_find": "yes",
        "study_root_find": "yes",
        "patient_root_get": "yes",
        "study_root_get": "yes",
        "patient_root_move": "yes",
        "study_root_move": "yes",
        "store": "yes",
        "qido": "yes",
        "wado": "yes",
        "stow": "yes",
    }
    code, out, _ = cli("nodes", "list")
    assert code == 0
    [row] = [line for line in out.splitlines() if line.startswith("PACS ")]
    assert "get(S)" in row and "qido" in row and "never" not in row  # the probe was stored

    assert cli("nodes", "remove", "PACS")[0] == 0
    code, _, err = cli("nodes", "echo", "PACS")
    assert code == 2 and "PACS" in err and len(err.strip().splitlines()) == 1


def test_probe_reports_a_server_refusing_c_get(
    cli: Callable[..., tuple[int, str, str]],
    orthanc_factory: Callable[..., OrthancServer],
    receiver_ae: tuple[str, int],
) -> None:
    aet, port = receiver_ae
    workbench = {"AET": aet, "Host": "127.0.0.1", "Port": port, "AllowGet": False}
    server = orthanc_factory(DicomAlwaysAllowGet=False, DicomModalities={"workbench": workbench})
    server.upload(iter_datasets(patients=1, studies=1, series=1, instances=1, seed=4))
    add = ["nodes", "add-server", "NOGET", "--ae", server.ae_title, "--host", "127.0.0.1"]
    assert cli(*add, "--port", str(server.dicom_port))[0] == 0
    code, out, err = cli("nodes", "probe", "NOGET")
    assert code == 0, err
    found = _probe_lines(out)
    assert found["study_root_get"] == "no" and found["patient_root_get"] == "no"
    assert found["study_root_find"] == "yes" and found["study_root_move"] == "yes"


def test_sandbox_start_probe_query_stop(cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = cli("sandbox", "start", "--no-get")
    try:
        assert code == 0, err
        assert "registered as node SANDBOX" in out
        # As its own process: a CLI run that leaves an association open lingers until
        # the peer's network timeout (60 s) instead of exiting.
        done = subprocess.run(
            [sys.executable, "-m", "adit_workbench", "nodes", "probe", "SANDBOX"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        found = _probe_lines(done.stdout)
        assert found["study_root_get"] == "no" and found["study_root_find"] == "yes"
        assert found["study_root_move"] == "yes"
        code, out, err = cli("query", "SANDBOX", "--level", "patient", "--format", "csv")
        assert code == 0 and len(out.strip().splitlines()) == 3  # header + 2 patients
        code, out, _ = cli("sandbox", "status")
        assert code == 0 and "patients: 2" in out
    finally:
        assert cli("sandbox", "stop")[0] == 0
    code, out, _ = cli("sandbox", "status")
    assert code == 3 and "not running" in out


@pytest.mark.parametrize(
    "args",
    [
        ["nodes", "add-server", "X", "--ae", "X", "--host", "h", "--port", "70000"],
        ["nodes", "add-server", "X", "--ae", "A" * 17, "--host", "h", "--port", "104"],
        ["nodes", "add-server", "X", "--host", "h", "--port", "104"],
        ["nodes", "add-folder", "F", "relative/../path\x00"],
        ["nodes", "echo", "NO_SUCH_NODE"],
        ["nodes", "frobnicate"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli: Callable[..., tuple[int, str, str]], args: list[str]
) -> None:
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1


def test_failed_operation_is_one_line_and_exit_1(cli: Callable[..., tuple[int, str, str]]) -> None:
    port = free_port()  # nothing listens there
    assert cli("nodes", "add-server", "DOWN", "--ae", "DOWN", "--host", "127.0.0.1",
               "--port", str(port))[0] == 0  # fmt: skip
    code, _, err = cli("nodes", "echo", "DOWN")
    assert code == 1
    assert err.count("\n") == 1 and "DOWN" in err and "C-ECHO" in err
