"""WADO-RS through the workbench service against Orthanc's own DICOMweb plugin.

Run: ``.venv/bin/python -m bench.dicomweb [--instances 500] [--size 512] [--repeat 2]``

Starts its own Orthanc (the test suite's ``OrthancServer``, ``TCP_NODELAY=1``) and the
workbench service as a child process (uvicorn, on a fresh embedded database in a
temporary folder) with the Orthanc registered twice: ``DIMSE`` (capabilities: C-GET
only) and ``WEB`` (capabilities: QIDO and WADO only, so it is reached over DICOMweb).
Loads one study of ``--instances`` 16-bit CT instances of ``--size``² pixels (512: about
0.5 MB each) in ``--series`` series. Then, in one run, the
same client (a streaming ``multipart/related`` reader that counts parts and drops them)
retrieves the study:

* from Orthanc's DICOMweb plugin directly (the reference);
* through the service from the DIMSE node (C-GET) and from the WEB node (WADO-RS);
* the same two with ``?pseudonym=BENCH-01`` (the project's pseudonymizer, server-side).

After one untimed round (the service builds its routes on its first requests), each
``--repeat`` round retrieves the study every way back to back. Prints the median
instances/s, the median over the rounds of each round's ratio to Orthanc (aims: >= 0.8x
plain, >= 0.7x pseudonymized), and the service process's CPU time per instance (user +
system, all threads; the least of the rounds), which other load on a shared machine does
not inflate as it does wall time.
Then the memory part: a fresh service process per study size retrieves a
``--memory-large`` and a ``--memory-small`` instance study (``--memory-size``² images) and
reports its peak RSS (VmHWM); aim: large/small <= 1.3x. Timings are noisy (±40 % on a
shared 2-core VM): compare ratios, with several rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.config import Settings
from adit_workbench.dicom.retrieve import _multipart
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from bench._orthanc import load_study
from tests.servers._util import free_port, wait_until
from tests.servers.orthanc import OrthancServer

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
SERVE = (
    "import sys, uvicorn\n"
    "from adit_workbench.config import get_settings\n"
    "from adit_workbench.web.app import create_app\n"
    "uvicorn.run(create_app(get_settings()), host='127.0.0.1', port=int(sys.argv[1]),"
    " log_level='warning')\n"
)


def _load(server: OrthancServer, *, instances: int, series: int, size: int, seed: int) -> str:
    return load_study(server, instances=instances, series=series, size=size, seed=seed, prefix="D")


class Service:
    """The workbench service in a child process, over a fresh embedded database."""

    def __init__(self, base: Path, server: OrthancServer) -> None:
        self.env = {**os.environ, "ADIT_WB_DATA_DIR": str(base / "data"), "TCP_NODELAY": "1"}
        for var in ("ADIT_WB_DATABASE_URL", "ADIT_WB_REDIS_URL", "ADIT_WB_SECRET_FILE"):
            self.env.pop(var, None)
        settings = Settings(data_dir=base / "data")
        settings.ensure_data_dir()
        database = Database(settings.effective_database_url)
        database.upgrade()
        with database.session() as session:
            node_store.add_server(session, ServerSpec(
                "DIMSE", server.ae_title, server.host, server.dicom_port,
                capabilities=Capabilities(study_root_get=True), max_associations=2,
            ))  # fmt: skip
            node_store.add_server(session, ServerSpec(
                "WEB", server.ae_title, server.host, server.dicom_port,
                dicomweb_root_url=server.dicomweb_url,
                capabilities=Capabilities(study_root_find=False, qido=True, wado=True),
            ))  # fmt: skip
        admin = sign_in(database, Identity("bench", IdentitySource.LOCAL), embedded=False)
        self.token = admin.tokens.create(expires=1).token
        database.dispose()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(self.port)], env=self.env, cwd=os.getcwd()
        )
        wait_until(lambda: _up(self.url), timeout=180, what="the workbench service")

    def peak_rss_mb(self) -> float:
        """The service process's peak resident set size so far."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the service process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/openapi.json", timeout=1).ok
    except requests.ConnectionError:
        return False


def _retrieve(url: str, headers: dict[str, str], params: dict[str, str] | None = None) -> int:
    """Stream a WADO-RS answer and count its parts (nothing kept)."""
    with requests.get(url, headers={"Accept": ACCEPT, **headers}, params=params, stream=True,
                      timeout=600) as response:  # fmt: skip
        response.raise_for_status()
        return sum(1 for _ in _multipart(response.headers["Content-Type"], response))


REFERENCE = "orthanc dicom-web"
Runs = dict[str, tuple[str, dict[str, str], dict[str, str] | None]]


def _rounds(
    repeat: int, run: Runs, expected: int, service: Service
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each retrieve's wall time per round (all runs of a round back to back, so that a
    round's ratios compare like with like on a shared machine), and the least service
    CPU time it took (steadier than wall time: other load does not add to it). One
    untimed round first: the service builds its routes and opens its pools on the
    first requests."""
    walls: dict[str, list[float]] = {name: [] for name in run}
    cpu: dict[str, float] = {}
    for round_ in range(repeat + 1):
        for name, (url, headers, params) in run.items():
            used = service.cpu_seconds()
            start = time.perf_counter()
            count = _retrieve(url, headers, params)
            seconds = time.perf_counter() - start
            used = service.cpu_seconds() - used
            if count != expected:
                raise SystemExit(f"{name}: {count} instances, expected {expected}")
            if round_:
                walls[name].append(seconds)
                cpu[name] = min(cpu.get(name, used), used)
    return walls, cpu


def _speed(server: OrthancServer, base: Path, args: argparse.Namespace) -> None:
    study = _load(server, instances=args.instances, series=args.series, size=args.size, seed=1)
    expected = (args.instances // args.series) * args.series
    service = Service(base / "speed", server)
    auth = {"Authorization": f"Token {service.token}"}
    pseudonym = {"pseudonym": "BENCH-01", "trial_protocol_id": "T1"}
    run = {
        REFERENCE: (f"{server.dicomweb_url}/studies/{study}", {}, None),
        "service, DIMSE node (C-GET)": (f"{service.url}/dicom-web/DIMSE/studies/{study}", auth,
                                        None),
        "service, WEB node (WADO-RS)": (f"{service.url}/dicom-web/WEB/studies/{study}", auth,
                                        None),
        "service, DIMSE node, pseudonymized": (f"{service.url}/dicom-web/DIMSE/studies/{study}",
                                               auth, pseudonym),
        "service, WEB node, pseudonymized": (f"{service.url}/dicom-web/WEB/studies/{study}",
                                             auth, pseudonym),
    }  # fmt: skip
    try:
        walls, cpu = _rounds(args.repeat, run, expected, service)
    finally:
        service.stop()
    print(f"WADO-RS of one study: {expected} instances of {args.size}x{args.size} "
          f"in {args.series} series, {args.repeat} rounds (medians; ratio: the median of "
          f"each round's ratio to Orthanc)")  # fmt: skip
    reference = walls[REFERENCE]
    for name, times in walls.items():
        seconds = statistics.median(times)
        ratio = statistics.median(ref / own for ref, own in zip(reference, times, strict=True))
        used = f"{cpu[name] * 1000 / expected:5.2f}" if name != REFERENCE else "    -"
        rounds = " ".join(f"{ref / own:.2f}" for ref, own in zip(reference, times, strict=True))
        print(f"  {name:38s} {seconds:7.2f} s  {expected / seconds:7.1f} inst/s  {ratio:5.2f}x"
              f"  service CPU {used} ms/inst  (rounds: {rounds})")  # fmt: skip


def _memory(server: OrthancServer, base: Path, args: argparse.Namespace) -> None:
    print(f"Peak RSS of the service process, C-GET, {args.memory_size}x{args.memory_size} images")
    peaks = {}
    for count in (args.memory_small, args.memory_large):
        study = _load(server, instances=count, series=1, size=args.memory_size, seed=100 + count)
        service = Service(base / f"memory-{count}", server)
        try:
            url = f"{service.url}/dicom-web/DIMSE/studies/{study}"
            got = _retrieve(url, {"Authorization": f"Token {service.token}"})
            peaks[count] = service.peak_rss_mb()
        finally:
            service.stop()
        print(f"  {got:6d} instances: peak RSS {peaks[count]:7.1f} MB")
    ratio = peaks[args.memory_large] / peaks[args.memory_small]
    print(f"  ratio {args.memory_large} / {args.memory_small}: {ratio:.2f}x (aim <= 1.3x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--series", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--memory-small", type=int, default=20)
    parser.add_argument("--memory-large", type=int, default=2000)
    parser.add_argument("--memory-size", type=int, default=128, help="image rows and columns")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-dicomweb-") as tmp:
        base = Path(tmp)
        server = OrthancServer("BENCHWEB", base)
        server.start()
        try:
            if not args.skip_speed:
                _speed(server, base, args)
            if not args.skip_memory:
                _memory(server, base, args)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
