"""Bench: the remote workbench (through the service) against the embedded one.

Run from the repository root::

    .venv/bin/python -m bench.service [--queries 200] [--clients 20] [--per-client 10]

It seeds a sandbox PACS, registers it in a fresh embedded database, starts the service as
its own process (``python -m adit_workbench serve`` on a free port, the embedded
defaults) and measures, in the same run:

* 200 study queries (``find_studies(patient_id=…)``) through ``Workbench`` in this
  process and through ``RemoteWorkbench``, alternating query by query (the same patient
  on both sides, so that both see the same load); the ratio of the two times, repeated
  ``--repeat`` times, the median ratio judged (aim: ≤ 1.5×);
* ``--clients`` concurrent remote clients, each running ``--per-client`` queries:
  p50/p95 latency and errors;
* progress latency: a transfer job is watched from the database (what the worker
  writes) and through the service, both polled every 20 ms; the lag is how much later
  the client saw each change (aim: within 1 s).

Each aim is printed at the end as ``PASS`` or ``MISS`` with its figure.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.config import Settings
from adit_workbench.dicom.spec import Capabilities, FolderSpec, ServerSpec
from adit_workbench.jobs import JobManager
from adit_workbench.jobs.handle import JobHandle
from adit_workbench.remote import RemoteWorkbench
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.store import nodes as node_store
from adit_workbench.store import open_database
from adit_workbench.workbench import Workbench

#: The aims of issue 12.
RATIO_AIM = 1.5
PROGRESS_AIM_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "api/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the service did not start")


def _timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _queries(wb: Any, patient_ids: list[str], n: int) -> int:
    node = wb.node("SANDBOX")
    found = 0
    for i in range(n):
        found += len(node.find_studies(patient_id=patient_ids[i % len(patient_ids)]))
    return found


def _paired(local: Any, remote: Any, patient_ids: list[str], n: int) -> tuple[float, float, int]:
    """``n`` queries on each side, one local then the same one remote: seconds, seconds,
    studies found (the same on both sides, or the comparison is void)."""
    nodes = (local.node("SANDBOX"), remote.node("SANDBOX"))
    spent = [0.0, 0.0]
    found = [0, 0]
    for i in range(n):
        patient_id = patient_ids[i % len(patient_ids)]
        for side, node in enumerate(nodes):
            start = time.perf_counter()
            found[side] += len(node.find_studies(patient_id=patient_id))
            spent[side] += time.perf_counter() - start
    if found[0] != found[1]:
        raise SystemExit(f"the two sides found {found[0]} and {found[1]} studies")
    return spent[0], spent[1], found[0]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _concurrent(url: str, token: str, ids: list[str], clients: int, per: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        wb = RemoteWorkbench(url, token)
        node = wb.node("SANDBOX")
        for i in range(per):
            start = time.perf_counter()
            try:
                node.find_studies(patient_id=ids[(k + i) % len(ids)])
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
        wb.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    elapsed, _ = _timed(lambda: [t.start() for t in threads] and [t.join() for t in threads])
    return {
        "requests": clients * per,
        "errors": errors,
        "p50_ms": 1000 * _percentile(latencies, 0.50) if latencies else float("nan"),
        "p95_ms": 1000 * _percentile(latencies, 0.95) if latencies else float("nan"),
        "throughput": len(latencies) / elapsed,
    }


def _progress_lag(local_job: JobHandle, remote_wb: RemoteWorkbench) -> list[float]:
    """Seconds between the database showing a new finished count and the client seeing it."""
    seen_db: dict[int, float] = {}
    seen_client: dict[int, float] = {}
    remote_job = remote_wb.jobs[local_job.id]

    def watch(read: Callable[[], Any], seen: dict[int, float]) -> None:
        while True:
            p = read()
            seen.setdefault(p.finished, time.monotonic())
            if p.finished == p.total:
                return
            time.sleep(0.02)

    threads = [
        threading.Thread(target=watch, args=(lambda: local_job.progress, seen_db)),
        threading.Thread(target=watch, args=(lambda: remote_job.progress, seen_client)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return [seen_client[k] - seen_db[k] for k in sorted(seen_db) if k in seen_client and k > 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-client", type=int, default=10)
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3,
                        help="repeat the query comparison; the median ratio is judged")  # fmt: skip
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        root = Path(tmp)
        settings = Settings(data_dir=root / "data")
        settings.ensure_data_dir()
        (root / "out").mkdir()
        with SandboxPacs(root / "pacs", ae_title="SANDBOX") as pacs:
            pacs.seed(args.patients, seed=0)
            database = open_database(settings)
            caps = Capabilities(patient_root_find=True, study_root_find=True,
                                study_root_get=True, patient_root_get=True)  # fmt: skip
            with database.session() as session:
                node_store.add_server(
                    session,
                    ServerSpec("SANDBOX", "SANDBOX", "127.0.0.1", pacs.port, capabilities=caps),
                )
                node_store.add_folder(session, FolderSpec("OUT", root / "out"))
            admin = sign_in(database, Identity("bench", IdentitySource.LOCAL), embedded=False)
            token = admin.tokens.create(expires=1).token
            local = Workbench(settings, database, admin)
            ids = sorted({s.patient_id for s in local.node("SANDBOX").find_studies()})

            port = _free_port()
            env = {**os.environ, "ADIT_WB_DATA_DIR": str(settings.data_dir)}
            proc = subprocess.Popen(
                [sys.executable, "-m", "adit_workbench", "serve", "--port", str(port)], env=env
            )
            url = f"http://127.0.0.1:{port}/"
            try:
                _wait_http(url, proc)
                remote = RemoteWorkbench(url, token)
                _queries(local, ids, 5)  # warm both: associations, connections
                _queries(remote, ids, 5)
                # Alternating query by query: on a shared machine the load drifts.
                runs = [_paired(local, remote, ids, args.queries) for _ in range(args.repeat)]
                ratios = [r / t for t, r, _ in runs]
                ratio = statistics.median(ratios)
                t_local = statistics.median(t for t, _, _ in runs)
                t_remote = statistics.median(r for _, r, _ in runs)
                print(f"{args.queries} study queries ({runs[0][2]} studies found), "
                      f"{args.patients} patients in the sandbox PACS, {args.repeat} runs "
                      "(medians):")  # fmt: skip
                print(f"  embedded Workbench : {t_local:6.2f} s "
                      f"({1000 * t_local / args.queries:5.1f} ms/query)")  # fmt: skip
                print(f"  RemoteWorkbench    : {t_remote:6.2f} s "
                      f"({1000 * t_remote / args.queries:5.1f} ms/query)")  # fmt: skip
                print(f"  ratio remote/embedded: {ratio:.2f}x (runs: "
                      f"{', '.join(f'{x:.2f}' for x in ratios)}; aim <= {RATIO_AIM}x)")  # fmt: skip

                c = _concurrent(url, token, ids, args.clients, args.per_client)
                print(f"{args.clients} concurrent clients x {args.per_client} queries: "
                      f"p50 {c['p50_ms']:.0f} ms, p95 {c['p95_ms']:.0f} ms, "
                      f"{c['throughput']:.1f} queries/s, {len(c['errors'])} errors")  # fmt: skip
                for error in sorted(set(c["errors"]))[:5]:
                    print(f"    {error}")

                hits = local.node("SANDBOX").find_studies(patient_id="SYN*")
                manager = JobManager(database, admin, settings, backend=None)
                remote_job = remote.transfer(hits, to="OUT", pseudonym="BENCH")
                local_job = manager.get(remote_job.id)
                lags = _progress_lag(local_job, remote)
                remote_job.wait(300, progress=False, raise_on_failure=False)
                print(f"progress of a {len(hits)}-study transfer job ({remote_job.status}): "
                      f"client saw each change {1000 * max(lags, default=0):.0f} ms after the "
                      f"database at worst (median {1000 * statistics.median(lags or [0]):.0f} "
                      "ms; 20 ms polls)")  # fmt: skip
                remote.close()
                worst = max(lags, default=0.0)
                print("aims (issue 12):")
                print(
                    f"  {_verdict(ratio <= RATIO_AIM)} remote/embedded time for "
                    f"{args.queries} study queries: {ratio:.2f}x (aim <= {RATIO_AIM}x)"
                )
                print(
                    f"  {_verdict(not c['errors'])} {args.clients} concurrent clients: "
                    f"p50 {c['p50_ms']:.0f} ms, p95 {c['p95_ms']:.0f} ms, "
                    f"{len(c['errors'])} errors (aim: 0 errors)"
                )
                print(f"  {_verdict(bool(lags) and worst <= PROGRESS_AIM_S)} job progress seen "
                      f"by the client {1000 * worst:.0f} ms after the worker's update at worst "
                      f"(aim <= {1000 * PROGRESS_AIM_S:.0f} ms)")  # fmt: skip
            finally:
                proc.terminate()
                proc.wait(20)
                local.close()
                database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
