"""Transfer speed and memory: the workbench against dcmtk getscu and ADIT's way.

Run: ``.venv/bin/python -m bench.transfer [--instances 500] [--size 512] [--repeat 2]``

Starts its own Orthanc (the test suite's ``OrthancServer``, ``TCP_NODELAY=1``) in a
temporary folder and loads one study of ``--instances`` instances of ``--size``² 16-bit
CT (512: about 0.5 MB each) in ``--series`` series. Then, in one run, each contender
copies the study into a fresh folder:

* the workbench by C-GET, pseudonymized (ADIT profile), ADIT folder layout;
* the workbench by WADO-RS, pseudonymized, ADIT folder layout;
* dcmtk ``getscu`` (``TCP_NODELAY=1``), not pseudonymized;
* the workbench by C-MOVE through its receiver, pseudonymized, ADIT folder layout;
* dcmtk ``movescu`` -> ``storescp`` (both ``TCP_NODELAY=1``; the bench Orthanc knows the
  storescp as a modality), not pseudonymized: the C-MOVE anchor;
* (context) the network layer's C-MOVE alone (``iter_cmove`` through the receiver, no
  instance listing, no pseudonymization), to tell its speed from the pipeline's;
* the path a user takes, next to the internal function above: ``wb.transfer(...)`` +
  ``job.wait()`` on an embedded workbench (job, task, audit, the local worker), and the
  ``adit-workbench transfer`` command as a fresh process (start included), both by
  ``--user-via`` (default C-MOVE), pseudonymized;
* ADIT's way: one pynetdicom C-GET association whose handler anonymizes each instance
  with dicognito and writes it, in turn.

Prints instances/s and the ratios to getscu and to movescu (aims: C-GET and WADO-RS
>= 1.0x getscu, C-MOVE >= 1.0x movescu). ``--series 1`` shows the
one-series case: WADO-RS then fetches in one stream (a request per instance would cost
the PACS more than a second stream gains), so one worker does the work. Then the memory part: a
child process runs a workbench C-GET transfer of a ``--memory-large`` instance study
and of a ``--memory-small`` one (small images, to stay fast) and reports its peak RSS
(and the largest worker's); aim: large/small <= 1.3x. Timings are noisy (±40 % on a
shared 2-core VM): ``--repeat`` runs every contender that many times, in turns, and
reports medians and the per-round ratios, and each run's CPU seconds (this process
with its workers or dcmtk tools, and Orthanc; the user paths' local worker is a process
of its own and not counted); ``--only`` runs some contenders (with the dcmtk anchors).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adit_workbench.config import Settings
from adit_workbench.deid import Profile, Pseudonymizer
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.transfer import FolderDestination, transfer_study
from bench._orthanc import load_study
from tests.servers._util import free_port, port_open
from tests.servers.orthanc import OrthancServer

SECRET = b"bench-transfer-secret-0123456789"
CAPS = Capabilities(study_root_get=True, study_root_move=True, store=True, wado=True, qido=True)


def _spec(server: OrthancServer) -> ServerSpec:
    return ServerSpec(
        server.name, server.ae_title, server.host, server.dicom_port,
        capabilities=CAPS, dicomweb_root_url=server.dicomweb_url, max_associations=3,
    )  # fmt: skip


#: The workbench's receiver port in this run (the bench Orthanc knows it as a C-MOVE
#: destination).
RECEIVER_PORT = free_port()
#: dcmtk storescp's port and AE title (the C-MOVE anchor's destination).
STORESCP_PORT = free_port()
STORESCP_AE = "STORESCP"


def _settings(base: Path) -> Settings:
    return Settings(data_dir=base / "data", ae_title="BENCH", receiver_port=RECEIVER_PORT)


def _workbench(
    server: OrthancServer, base: Path, study: str, via: str, out: Path, pseudonymize: bool = True
) -> int:
    settings = _settings(base)
    node = DicomServer(_spec(server), settings)
    pseudonymizer = (
        Pseudonymizer(SECRET, Profile.adit("BENCH-01", trial_id="T1")) if pseudonymize else None
    )
    try:
        result = transfer_study(
            node, FolderDestination(out, "job"), study, via=via, pseudonymizer=pseudonymizer
        )
    finally:
        node.close()
    assert result.ok and not result.missing, str(result)
    return result.delivered


def _getscu(server: OrthancServer, study: str, out: Path) -> int:
    out.mkdir(parents=True)
    subprocess.run(
        ["getscu", "-S", "-aet", "GETSCU", "-aec", server.ae_title, server.host,
         str(server.dicom_port), "-k", "QueryRetrieveLevel=STUDY",
         "-k", f"StudyInstanceUID={study}", "-od", str(out)],
        check=True, env={**os.environ, "TCP_NODELAY": "1"},
    )  # fmt: skip
    return len(list(out.iterdir()))


def _adit_way(server: OrthancServer, study: str, out: Path) -> int:
    """One association, a C-STORE handler that anonymizes with dicognito and writes."""
    import dicognito.anonymizer
    from pydicom import Dataset
    from pynetdicom import AE, build_role, evt

    # Spelled out: pynetdicom generates its sop_class names, invisible to type checkers.
    ct_storage = "1.2.840.10008.5.1.4.1.1.2"
    study_get = "1.2.840.10008.5.1.4.1.2.2.3"

    out.mkdir(parents=True)
    anonymizer = dicognito.anonymizer.Anonymizer()
    written = [0]

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        anonymizer.anonymize(ds)
        ds.PatientID = ds.PatientName = "BENCH-01"
        ds.save_as(out / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        written[0] += 1
        return 0x0000

    ae = AE(ae_title="ADITWAY")
    ae.add_requested_context(study_get)
    ae.add_requested_context(ct_storage)
    assoc = ae.associate(
        server.host, server.dicom_port, ae_title=server.ae_title,
        ext_neg=[build_role(ct_storage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )  # fmt: skip
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    for _status, _ in assoc.send_c_get(query, study_get):
        pass
    assoc.release()
    return written[0]


def _movescu(server: OrthancServer, study: str, out: Path) -> int:
    """dcmtk movescu asking the bench Orthanc to move the study to a dcmtk storescp."""
    out.mkdir(parents=True)
    env = {**os.environ, "TCP_NODELAY": "1"}
    scp = subprocess.Popen(
        ["storescp", "-aet", STORESCP_AE, "-od", str(out), str(STORESCP_PORT)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not port_open(STORESCP_PORT):
            if time.monotonic() > deadline or scp.poll() is not None:
                raise RuntimeError("storescp did not start")
            time.sleep(0.01)
        subprocess.run(
            ["movescu", "-S", "-aet", "MOVESCU", "-aec", server.ae_title, "-aem", STORESCP_AE,
             server.host, str(server.dicom_port), "-k", "QueryRetrieveLevel=STUDY",
             "-k", f"StudyInstanceUID={study}"],
            check=True, env=env,
        )  # fmt: skip
    finally:
        scp.terminate()
        scp.wait(10)
    return len(list(out.iterdir()))


def _cmove_only(server: OrthancServer, base: Path, study: str, out: Path) -> int:
    """The network layer alone: one study-level C-MOVE through the workbench's receiver
    (iter_cmove), each claimed file moved to ``out``: no listing, no pseudonymization."""
    from pydicom import Dataset

    from adit_workbench.dicom.dimse import DimseNode
    from adit_workbench.dicom.receiver import shared_receiver
    from adit_workbench.dicom.retrieve import iter_cmove

    out.mkdir(parents=True)
    settings = _settings(base)
    query = Dataset()
    query.StudyInstanceUID = study
    with DimseNode(_spec(server), settings) as node, shared_receiver(settings) as spool:
        for path in iter_cmove(node, "STUDY", query, spool=spool):
            os.replace(path, out / path.name)
    return len(list(out.iterdir()))


def _user_env(base: Path) -> dict[str, str]:
    """The environment of the user-path contenders: an embedded workbench of its own."""
    return {
        "ADIT_WB_DATA_DIR": str(base / "user"),
        "ADIT_WB_AE_TITLE": "BENCH",
        "ADIT_WB_RECEIVER_PORT": str(RECEIVER_PORT),
    }


def _user_setup(server: OrthancServer, base: Path) -> None:
    """Register the bench Orthanc and the output folder in the user workbench (once)."""
    from adit_workbench.workbench import connect_local

    os.environ.update(_user_env(base))
    with connect_local(Settings()) as wb:
        spec = _spec(server)
        wb.add_server(
            "PACS", ae_title=spec.ae_title, host=spec.host, port=spec.port,
            dicomweb_url=spec.dicomweb_root_url, capabilities=CAPS, max_associations=3,
        )  # fmt: skip
        wb.add_folder("OUT", base / "out")


def _count(out: Path) -> int:
    return sum(1 for _ in out.rglob("*.dcm"))


def _user_notebook(base: Path, study: str, via: str, out: Path) -> int:
    """``wb.transfer(...)`` + ``job.wait()``, as a notebook does."""
    out.mkdir(parents=True)  # a registered folder exists; the bench empties it per run
    from adit_workbench.workbench import connect_local

    os.environ.update(_user_env(base))
    with connect_local(Settings()) as wb:
        job = wb.transfer(
            [("", study)], source="PACS", to="OUT", pseudonym="BENCH-01",
            params={"via": via},
        )  # fmt: skip
        job.wait(progress=False)
    return _count(out)


def _user_cli(base: Path, study: str, via: str, out: Path) -> int:
    """``adit-workbench transfer`` as a fresh process (its start included)."""
    out.mkdir(parents=True)
    answer = subprocess.run(
        [sys.executable, "-m", "adit_workbench", "transfer", "--from", "PACS", "--to", "OUT",
         "--study", study, "--pseudonym", "BENCH-01", "--via", via],
        env={**os.environ, **_user_env(base)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if answer.returncode:  # its progress bars go to stderr: shown only when it failed
        raise RuntimeError(f"adit-workbench transfer failed: {answer.stderr[-2000:]}")
    return _count(out)


def _speed(
    server: OrthancServer,
    base: Path,
    study: str,
    n: int,
    repeat: int,
    user_via: str,
    only: list[str] | None = None,
) -> None:
    via_label = {"cget": "C-GET", "cmove": "C-MOVE", "wado": "WADO-RS"}[user_via]
    contenders: list[tuple[str, Callable[[Path], int]]] = [
        ("workbench C-GET + pseudonymize", lambda o: _workbench(server, base, study, "cget", o)),
        ("workbench WADO-RS + pseudonymize", lambda o: _workbench(server, base, study, "wado", o)),
        ("dcmtk getscu (no pseudonymization)", lambda o: _getscu(server, study, o)),
        ("workbench C-MOVE + pseudonymize", lambda o: _workbench(server, base, study, "cmove", o)),
        ("dcmtk movescu->storescp (no pseud.)", lambda o: _movescu(server, study, o)),
        (
            f"user: wb.transfer+wait, {via_label}",
            lambda o: _user_notebook(base, study, user_via, o),
        ),
        (
            f"user: adit-workbench transfer, {via_label}",
            lambda o: _user_cli(base, study, user_via, o),
        ),
        (
            "(context) workbench C-GET, plain copy",
            lambda o: _workbench(server, base, study, "cget", o, pseudonymize=False),
        ),
        (
            "(context) workbench C-MOVE, network only",
            lambda o: _cmove_only(server, base, study, o),
        ),
        (
            "(context) workbench WADO-RS, plain copy",
            lambda o: _workbench(server, base, study, "wado", o, pseudonymize=False),
        ),
        ("ADIT way: pynetdicom C-GET + dicognito", lambda o: _adit_way(server, study, o)),
    ]
    if only:  # the anchors stay: the ratios need them in the same run
        anchors = ("dcmtk getscu", "dcmtk movescu")
        keep = [*only, *anchors]
        contenders = [c for c in contenders if any(word in c[0] for word in keep)]
    _user_setup(server, base)
    rates: dict[str, list[float]] = {}
    for round_ in range(repeat):
        for label, run in contenders:
            out = base / "out"
            shutil.rmtree(out, ignore_errors=True)
            _reap_workers()  # the last contender's workers must not run into this one
            os.sync()
            cpu_before = _cpu(server)
            start = time.perf_counter()
            got = run(out)
            elapsed = time.perf_counter() - start
            _reap_workers()  # their CPU counts once they are reaped
            ours, orthanc = (a - b for a, b in zip(_cpu(server), cpu_before, strict=True))
            assert got == n, f"{label}: {got} of {n} instances"
            rate = n / elapsed
            rates.setdefault(label, []).append(rate)
            print(f"[{round_ + 1}] {label:<42} {elapsed:6.2f} s {rate:7.1f} inst/s  "
                  f"CPU {ours:5.2f} s + Orthanc {orthanc:5.2f} s", flush=True)  # fmt: skip
        shutil.rmtree(base / "out", ignore_errors=True)
    median = {label: statistics.median(got) for label, got in rates.items()}
    getscu = median["dcmtk getscu (no pseudonymization)"]
    movescu = median["dcmtk movescu->storescp (no pseud.)"]
    internal = median.get(f"workbench {via_label} + pseudonymize", 0.0) or float("nan")
    print(f"median of {repeat} (internal: workbench {via_label} + pseudonymize):")
    for label, rate in median.items():
        print(f"  {label:<42} {rate:7.1f} inst/s  {rate / getscu:5.2f}x getscu  "
              f"{rate / movescu:5.2f}x movescu  {rate / internal:5.2f}x internal")  # fmt: skip
    # The ratio of each round (both measured in the same round) is steadier on a
    # shared machine than the ratio of medians.
    for label, anchor, name in (
        ("workbench C-MOVE + pseudonymize", "dcmtk movescu->storescp (no pseud.)", "movescu"),
        ("workbench C-GET + pseudonymize", "dcmtk getscu (no pseudonymization)", "getscu"),
    ):
        if label in rates and anchor in rates:
            ratios = [a / b for a, b in zip(rates[label], rates[anchor], strict=True)]
            text = " ".join(f"{r:.2f}" for r in ratios)
            print(f"  {label} / {name} per round: {text} (median "
                  f"{statistics.median(ratios):.2f}x)")  # fmt: skip


def _cpu(server: OrthancServer) -> tuple[float, float]:
    """CPU seconds so far: this process with its reaped children (workers, dcmtk tools),
    and the bench Orthanc. A load-independent measure next to the noisy wall time."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    orthanc = 0.0
    if server.proc is not None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            orthanc = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return ours, orthanc


def _reap_workers() -> None:
    """Wait until a transfer's workers have exited (they do so on their own, after it
    returns); active_children() reaps those that have."""
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.01)


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(args: argparse.Namespace) -> None:
    """In the child: one transfer, then print peak RSS of this process and its workers."""
    job = json.loads(args.memory_child)
    settings = Settings(data_dir=Path(job["base"]) / "data", ae_title="BENCH")
    spec = ServerSpec(**job["spec"], capabilities=CAPS)
    node = DicomServer(spec, settings)
    pseudonymizer = Pseudonymizer(SECRET, Profile.adit("MEM-01"))
    result = transfer_study(
        node, FolderDestination(Path(job["out"])), job["study"], via=job["via"],
        pseudonymizer=pseudonymizer,
    )  # fmt: skip
    assert result.ok and not result.missing, str(result)
    _reap_workers()  # RUSAGE_CHILDREN counts reaped children only
    # VmHWM, not getrusage: Linux carries ru_maxrss across exec, so the child would report
    # the (large) benchmark parent's size at fork time.
    own = _vm_hwm_kb()
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"delivered": result.delivered, "rss_kb": own, "workers_kb": workers}))


def _memory(server: OrthancServer, base: Path, small: int, large: int, via: str, size: int) -> None:
    results: dict[int, dict[str, int]] = {}
    for count, seed in ((small, 7), (large, 8)):
        study = load_study(server, instances=count, series=2, size=size, seed=seed, prefix="B")
        out = base / f"mem-{count}"
        job = {
            "base": str(base), "study": study, "out": str(out), "via": via,
            "spec": {"name": server.name, "ae_title": server.ae_title, "host": server.host,
                     "port": server.dicom_port, "dicomweb_root_url": server.dicomweb_url,
                     "max_associations": 3},
        }  # fmt: skip
        answer = subprocess.run(
            [sys.executable, "-m", "bench.transfer", "--memory-child", json.dumps(job)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        results[count] = json.loads(answer.stdout.strip().splitlines()[-1])
        shutil.rmtree(out, ignore_errors=True)
    s, g = results[small], results[large]
    print(f"peak RSS by {via}, {small} vs {large} instances of {size}x{size}:")
    for label, key, aim in (
        ("transfer process", "rss_kb", "  (aim <= 1.3x)"),
        ("largest worker", "workers_kb", ""),
    ):
        small_mb, large_mb = s[key] / 1024, g[key] / 1024
        print(f"  {label:<17} {small_mb:6.1f} MB vs {large_mb:6.1f} MB = "
              f"{large_mb / small_mb:4.2f}x{aim}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer", description=__doc__)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--series", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--memory-small", type=int, default=20)
    parser.add_argument("--memory-large", type=int, default=2000)
    parser.add_argument("--memory-via", default="cget", choices=["cget", "wado", "cmove"])
    parser.add_argument("--memory-size", type=int, default=64, help="image rows and columns")
    parser.add_argument(
        "--user-via", default="cmove", choices=["cget", "wado", "cmove"],
        help="how the user-path contenders (wb.transfer, adit-workbench transfer) fetch",
    )  # fmt: skip
    parser.add_argument(
        "--only", action="append", default=None, metavar="WORDS",
        help="run only the contenders whose label holds WORDS (repeat; the dcmtk anchors "
        "always run)",
    )  # fmt: skip
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        base = Path(tmp)
        server = OrthancServer(
            "BENCH_PACS",
            base,
            modalities={
                "workbench": ("BENCH", RECEIVER_PORT),
                "storescp": (STORESCP_AE, STORESCP_PORT),
            },
        ).start()
        try:
            if not args.skip_speed:
                start = time.perf_counter()
                study = load_study(server, instances=args.instances, series=args.series,
                                   size=args.size, seed=1, prefix="B")  # fmt: skip
                n = server.statistics()["CountInstances"]
                mb = int(server.statistics()["TotalDiskSizeMB"])
                print(f"loaded {n} instances ({mb} MB) in {time.perf_counter() - start:.1f} s; "
                      f"{os.cpu_count()} CPUs")  # fmt: skip
                _speed(server, base, study, n, args.repeat, args.user_via, args.only)
            if not args.skip_memory:
                _memory(server, base, args.memory_small, args.memory_large, args.memory_via,
                        args.memory_size)  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
