"""Real notebook kernels (ipykernel through jupyter_client and nbclient) on a temporary
data directory with the sandbox PACS: what a researcher's notebook does, killed,
restarted and interrupted the way a researcher's notebook is.

Every test runs twice (``lab`` is parametrized): on the embedded workbench, where the
kernel holds the data directory, and on the workbench service (``adit-workbench serve``
as its own process on a free port), where the kernel holds only the service URL and an
API token, so ``aw.connect()`` returns the remote workbench. The cells are the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.sandbox.synthetic import iter_datasets
from tests.servers._util import free_port

ROOT = Path(__file__).resolve().parents[2]
#: Instances of the big study (2 series): long enough to kill a kernel in the middle.
BIG_INSTANCES = 2 * 150


@dataclass
class Lab:
    """A data directory with a seeded sandbox, and the environment of its kernels."""

    data_dir: Path
    env: dict[str, str]
    tmp: Path
    #: ``embedded`` or ``service`` (the kernel is a client of the workbench service).
    backend: str = "embedded"

    def folder(self, name: str) -> Path:
        path = self.tmp / name.lower()
        path.mkdir(exist_ok=True)
        return path

    def setup_code(self, *folders: str) -> str:
        """The first cell: connect, start the sandbox, register folders, find the big study."""
        adds = "\n".join(
            f"if {name!r} not in names: wb.add_folder({name!r}, {str(self.folder(name))!r})"
            for name in folders
        )
        # On the service the sandbox is the service's (started with it): a kernel of the
        # service cannot start processes on the service's machine.
        sandbox = "wb.start_sandbox()\n" if self.backend == "embedded" else ""
        return (
            "import adit_workbench as aw\n"
            "wb = aw.connect()\n"
            f"assert type(wb).__name__ == {self.workbench_class!r}, wb\n"
            f"{sandbox}"
            "names = {s.name for s in wb.node_specs()}\n"
            f"{adds}\n"
            "hits = wb.node('SANDBOX').find_studies(patient_id='BIG*')\n"
            "assert len(hits) == 1, hits\n"
        )

    @property
    def workbench_class(self) -> str:
        return "Workbench" if self.backend == "embedded" else "RemoteWorkbench"


@pytest.fixture(scope="module", params=["embedded", "service"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One data dir per module; the sandbox archive pre-seeded with a big study."""
    tmp = tmp_path_factory.mktemp("lab")
    data_dir = tmp / "data"
    pacs = SandboxPacs(data_dir / "sandbox", ae_title="SANDBOX")
    pacs.seed(2, seed=0)  # SYN0001, SYN0002: a CT and an MR study each
    for ds in iter_datasets(
        patients=1, seed=11, studies=1, series=2, instances=BIG_INSTANCES // 2, pid_prefix="BIG"
    ):
        pacs.archive.add_dataset(ds)
    pacs.close()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ADIT_WB_") and k not in ("JPY_API_TOKEN", "JUPYTERHUB_API_TOKEN")
    }
    env.update(
        ADIT_WB_DATA_DIR=str(data_dir),
        ADIT_WB_SANDBOX_PORT=str(free_port()),
        ADIT_WB_RECEIVER_PORT=str(free_port()),
        ADIT_WB_SANDBOX_PATIENTS="2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
    )
    if request.param == "embedded":
        yield Lab(data_dir, env, tmp)
        _stop_everything(env)
        return
    server, url, token = start_service(env, tmp)
    kernel_env = {k: v for k, v in env.items() if not k.startswith("ADIT_WB_")}
    kernel_env.update(ADIT_WB_SERVICE_URL=url, ADIT_WB_API_TOKEN=token)
    try:
        yield Lab(data_dir, kernel_env, tmp, backend="service")
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        _stop_everything(env)


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "adit_workbench", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"adit-workbench {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def start_service(env: dict[str, str], tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """The sandbox, an API token of the data directory's (admin) user, and
    ``adit-workbench serve`` on a free port; returns the process, its URL and the token."""
    _cli(env, "sandbox", "start")
    token = _cli(env, "tokens", "create", "--expires", "1").strip().splitlines()[0]
    port = free_port()
    log = (tmp / "service.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "adit_workbench", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, (tmp / "service.log").read_text()[-2000:]
        try:
            if requests.get(url + "api/health", timeout=2).ok:
                return server, url, token
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the workbench service did not start"
        time.sleep(0.2)


def _stop_everything(env: dict[str, str]) -> None:
    for args in (["worker", "stop"], ["sandbox", "stop"]):
        subprocess.run(
            [sys.executable, "-m", "adit_workbench", *args],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def kernel(lab: Lab) -> Iterator[Callable[[], KernelManager]]:
    """Start kernels on the lab's environment; each is shut down (or already dead) after."""
    started: list[KernelManager] = []

    def start() -> KernelManager:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=lab.env, cwd=str(lab.tmp))
        started.append(km)
        return km

    yield start
    for km in started:
        if km.has_kernel:
            try:
                km.shutdown_kernel(now=True)
            except Exception:  # already killed by the test
                km.cleanup_resources()


def run(
    km: KernelManager,
    *cells: str,
    allow_errors: bool = False,
    interrupt_when: Callable[[], bool] | None = None,
) -> Any:
    """Run ``cells`` in the kernel through nbclient; returns the executed notebook.

    ``interrupt_when``: interrupt the kernel (the stop button / Ctrl-C: SIGINT through
    the kernel manager) as soon as this returns True while the cells run.
    """
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code) for code in cells]
    client = NotebookClient(
        nb,
        km=km,
        kernel_name="python3",
        allow_errors=allow_errors,
        timeout=600,
        startup_timeout=180,  # a loaded 2-core CI machine
    )
    done = threading.Event()

    def interrupter() -> None:
        assert interrupt_when is not None
        while not done.wait(0.05):
            if interrupt_when():
                km.interrupt_kernel()
                return

    thread = threading.Thread(target=interrupter, daemon=True) if interrupt_when else None
    if thread is not None:
        thread.start()
    try:
        client.execute()
    finally:
        done.set()
    return nb


def text(cell: Any) -> str:
    """Everything a cell printed (stdout, stderr, results, errors) as one string."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(str(out.data.get("text/plain", "")))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "".join(parts)


def stdout(cell: Any) -> str:
    """What a cell printed to stdout (progress bars and warnings go elsewhere)."""
    return "".join(
        out.text for out in cell.outputs if out.output_type == "stream" and out.name == "stdout"
    )


def kill(km: KernelManager) -> int:
    """SIGKILL the kernel process (a crash); returns its pid."""
    pid = km.provisioner.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    return pid


def processes_of_session(sid: int) -> list[int]:
    """Live processes whose session is ``sid`` (a kernel's children that survived it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found
