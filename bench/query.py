"""Bench: many distinct study-level queries, workbench versus a serial loop of dcmtk findscu.

Run from the repository root::

    .venv/bin/python -m bench.query [--queries 200] [--associations 2]

It starts its own Orthanc on free ports (the test suite's ``OrthancServer``), loads a
synthetic archive with one study per query, then times, in the same run:

* the workbench: :func:`adit_workbench.dicom.query.run_many` over C-FIND (and, for
  reference, over QIDO-RS), reusing pooled associations, never more than
  ``--associations`` at once;
* dcmtk: one ``findscu`` process per query, one after the other (``TCP_NODELAY=1``), the
  way a shell script loops over a list.

Both ask the same identifiers (same matching and return keys) and must find the same
number of studies per query; the ratio of the two times is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from adit_workbench.config import Settings
from adit_workbench.dicom.filters import normalize
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.query import run_many
from adit_workbench.dicom.query_plan import Route, identifiers
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.sandbox.synthetic import iter_datasets


def _queries(n: int) -> list[dict[str, str]]:
    """n distinct study queries: by PatientID for half, by AccessionNumber for the rest."""
    patients = (n + 1) // 2
    studies = list(iter_datasets(patients=patients, studies=2, series=1, instances=1, rows=8,
                                 cols=8, modality="mixed", pid_prefix="BQ"))  # fmt: skip
    by_id = [{"patient_id": ds.PatientID} for ds in studies[::2]][:patients]
    by_accession = [{"accession_number": ds.AccessionNumber} for ds in studies[1::2]]
    return (by_id + by_accession)[:n]


def _findscu_args(
    findscu: str, filters: dict[str, str], host: str, port: int, aet: str
) -> list[str]:
    args = [findscu, "-v", "-S", "-aet", "ADIT_WB", "-aec", aet]
    for element in identifiers(normalize("study", filters), Route.STUDY_ROOT)[0]:
        value = str(element.value) if element.value not in (None, "") else ""
        args += ["-k", f"{element.keyword}={value}" if value else element.keyword]
    return [*args, host, str(port)]


def _run_findscu(findscu: str, queries: list[dict[str, str]], host: str, port: int,
                 aet: str) -> tuple[float, list[int]]:  # fmt: skip
    env = {**os.environ, "TCP_NODELAY": "1"}
    counts = []
    started = time.perf_counter()
    for filters in queries:
        proc = subprocess.run(
            _findscu_args(findscu, filters, host, port, aet),
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        counts.append(sum("(Pending)" in line for line in proc.stdout.splitlines()
                          + proc.stderr.splitlines()))  # fmt: skip
    return time.perf_counter() - started, counts


def _run_workbench(spec: ServerSpec, settings: Settings, queries: list[dict[str, str]],
                   via: str) -> tuple[float, list[int]]:  # fmt: skip
    started = time.perf_counter()
    with closing(open_node(spec, settings)) as node:
        results = run_many(node, queries, level="study", via=via)
    elapsed = time.perf_counter() - started
    return elapsed, [len(r) for r in results]  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """Run the bench and print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.query", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--queries", type=int, default=200, help="distinct study queries")
    parser.add_argument("--associations", type=int, default=2, help="max concurrent associations")
    args = parser.parse_args(argv)

    findscu = shutil.which("findscu")
    if findscu is None:
        print("findscu not found: apt-get install dcmtk", file=sys.stderr)
        return 2
    from tests.servers.orthanc import OrthancServer  # the test suite's server, reused

    queries = _queries(args.queries)
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        server = OrthancServer("BENCHQ", Path(tmp)).start()
        try:
            archive = iter_datasets(patients=(args.queries + 1) // 2, studies=2, series=1,
                                    instances=1, rows=8, cols=8, modality="mixed",
                                    pid_prefix="BQ")  # fmt: skip
            loaded = len(server.upload(archive))
            settings = Settings(data_dir=Path(tmp) / "wb")
            spec = ServerSpec(
                name="BENCHQ", ae_title=server.ae_title, host=server.host,
                port=server.dicom_port, dicomweb_root_url=server.dicomweb_url,
                capabilities=Capabilities(study_root_find=True, qido=True),
                max_associations=args.associations,
            )  # fmt: skip
            print(f"Orthanc with {loaded} studies; {len(queries)} distinct study queries")
            figures: dict[str, Any] = {}
            figures["findscu"] = _run_findscu(
                findscu, queries, server.host, server.dicom_port, server.ae_title
            )
            figures["workbench C-FIND"] = _run_workbench(spec, settings, queries, "dimse")
            figures["workbench QIDO-RS"] = _run_workbench(spec, settings, queries, "dicomweb")
        finally:
            server.stop()

    reference = figures["findscu"][1]
    base = figures["findscu"][0]
    print(f"{'':20} {'total s':>8} {'ms/query':>9} {'speed-up':>9}  rows")
    for name, (elapsed, counts) in figures.items():
        same = "same" if counts == reference else "DIFFERENT"
        print(f"{name:20} {elapsed:8.2f} {1000 * elapsed / len(queries):9.1f} "
              f"{base / elapsed:8.1f}x  {sum(counts)} ({same})")  # fmt: skip
    ratio = base / figures["workbench C-FIND"][0]
    print(f"ratio findscu / workbench C-FIND = {ratio:.1f}x "
          f"(max {args.associations} associations)")  # fmt: skip
    return 0 if all(c == reference for _, c in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
