"""Batch-transfer intake speed: a 10,000-row file validated, stored as tasks and queued.

Run: ``.venv/bin/python -m bench.jobs [--rows 10000] [--format csv|xlsx] [--redis URL]
[--database URL]``

Writes a batch-transfer file (two series rows per study, so 10,000 rows are 5,000 study
tasks; one pseudonym per patient), then times, separately: parsing and validating the
file, and creating the job (access checks, one transaction for the job and its tasks,
one queue entry per task). Without ``--redis`` the tasks go to a queue that only counts
(the database part is what is measured); with it they go to RQ. The database is a
temporary embedded SQLite file unless ``--database`` names one. Prints seconds and rows/s.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from adit_workbench.access import Identity, IdentitySource, sign_in
from adit_workbench.config import Settings
from adit_workbench.dicom.spec import FolderSpec, ServerSpec
from adit_workbench.jobs import JobManager, RQBackend, parse_batch_transfer
from adit_workbench.jobs.kinds import batch_transfer
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store

ROOT = "1.2.826.0.1.3680043.8.498"


class CountingBackend:
    """A queue that only counts (so that the bench measures validation and the database)."""

    name = "count"

    def __init__(self) -> None:
        self.count = 0

    def enqueue(self, task_id: int, *, priority: int, timeout: int, delay: float = 0) -> None:
        self.count += 1

    def close(self) -> None:
        pass


def write_file(path: Path, rows: int) -> Path:
    """``rows`` rows: two series per study, five studies per patient."""
    header = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Pseudonym"]
    body = []
    for n in range(rows):
        study = n // 2
        patient = study // 5
        body.append([f"{patient:08d}", f"{ROOT}.{study + 1}", f"{ROOT}.{study + 1}.{n % 2 + 1}",
                     f"SUBJ-{patient:06d}"])  # fmt: skip
    if path.suffix == ".xlsx":
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet()
        sheet.append(header)
        for row in body:
            sheet.append(row)
        book.save(path)
    else:
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(body)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    parser.add_argument("--redis", help="Queue to RQ on this Redis (default: count only).")
    parser.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        folder = Path(tmp)
        url = args.database or f"sqlite:///{folder / 'bench.sqlite3'}"
        database = Database(url)
        database.upgrade()
        settings = Settings(data_dir=folder / "data")
        with database.session() as session:
            node_store.add_server(session, ServerSpec("PACS", "PACS", "127.0.0.1", 11112))
            node_store.add_folder(session, FolderSpec("OUT", folder / "out"))
        access = sign_in(database, Identity(f"bench{os.getpid()}", IdentitySource.SERVICE),
                         embedded=True)  # fmt: skip
        path = write_file(folder / f"batch.{args.format}", args.rows)
        size = path.stat().st_size / 1e6

        t0 = time.perf_counter()
        items = parse_batch_transfer(path)
        parsed = time.perf_counter() - t0

        backend = (
            RQBackend(args.redis, prefix=f"bench-{os.getpid()}") if args.redis
            else CountingBackend()
        )  # fmt: skip
        jobs = JobManager(database, access, settings, backend)
        t0 = time.perf_counter()
        job = batch_transfer(jobs, path, source="PACS", destination="OUT", project_name="bench")
        created = time.perf_counter() - t0
        tasks = job.progress.total
        if args.redis:
            from rq import Queue

            from adit_workbench.jobs.queue import queue_names

            for name in queue_names(backend.prefix):  # type: ignore[union-attr]
                Queue(name, connection=backend.connection).empty()  # type: ignore[union-attr]
        database.dispose()

    print(f"file: {args.rows} rows, {args.format}, {size:.2f} MB -> {len(items)} study tasks")
    print(f"validate only:            {parsed:7.2f} s  {args.rows / parsed:9.0f} rows/s")
    print(f"validate + store + queue: {created:7.2f} s  {args.rows / created:9.0f} rows/s "
          f"({tasks} tasks, queue: {'rq' if args.redis else 'count only'})")  # fmt: skip


if __name__ == "__main__":
    main()
