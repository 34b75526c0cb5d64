"""``adit-workbench lab``: the workspace it prepares and a real JupyterLab answering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from adit_workbench.cli import main
from tests.servers._util import free_port, port_open, stop_process, wait_until

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_prepares_the_workspace(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = tmp_path / "ws"
    assert main(["lab", "--dry-run", "--no-browser", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert (workspace / "quickstart.ipynb").is_file()
    assert (workspace / "dashboards" / "selective_transfer.ipynb").is_file()
    assert "--LabApp.default_url=/lab/tree/quickstart.ipynb" in out
    assert "--ServerApp.ip=127.0.0.1" in out
    # A second run keeps the user's (possibly edited) copies.
    (workspace / "quickstart.ipynb").write_text("{}")
    assert main(["lab", "--dry-run", "--workspace", str(workspace)]) == 0
    assert (workspace / "quickstart.ipynb").read_text() == "{}"


@pytest.mark.slow
def test_lab_serves_jupyterlab(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "lab.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "adit_workbench", "lab", "--no-browser", f"--port={port}",
             "--workspace", str(tmp_path / "ws")],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: port_open(port), 90, "jupyterlab", proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=10) as response:
            assert "version" in json.load(response)
    finally:
        stop_process(proc)
    assert (tmp_path / "ws" / "quickstart.ipynb").is_file()
