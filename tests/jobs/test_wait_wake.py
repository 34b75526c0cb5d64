"""Waiting for a job wakes on a write to the database, not only on the poll tick."""

from __future__ import annotations

from pathlib import Path

from adit_workbench.jobs.progress import Progress, files_changed, follow
from adit_workbench.jobs.status import JobStatus
from adit_workbench.store import Database


def _progress(status: JobStatus) -> Progress:
    return Progress(status, total=1, finished=0, counts={}, items_done=0, items_total=None)


def test_files_changed_sees_a_write_once(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"a")
    changed = files_changed([path, tmp_path / "missing-wal"])
    assert not changed()
    path.write_bytes(b"ab")
    assert changed() and not changed()
    (tmp_path / "missing-wal").write_bytes(b"x")  # a file that appears counts too
    assert changed()


def test_follow_reads_again_when_woken_before_the_poll_tick() -> None:
    statuses = iter([JobStatus.IN_PROGRESS, JobStatus.SUCCESS])
    reads: list[JobStatus] = []
    wakes = iter([False, False, True])

    def read() -> Progress:
        reads.append(next(statuses))
        return _progress(reads[-1])

    # A poll of an hour: only the wake can end the pause between the two reads.
    last, why = follow(
        1, read, timeout=None, poll=3600, progress=False, cancel=None, how_to_cancel="",
        reasons=list, wake=lambda: next(wakes),
    )  # fmt: skip
    assert last.status is JobStatus.SUCCESS and why == []
    assert reads == [JobStatus.IN_PROGRESS, JobStatus.SUCCESS]


def test_a_sqlite_job_handle_watches_the_database_files(tmp_path: Path) -> None:
    from adit_workbench.jobs.handle import _writes_of

    database = Database(f"sqlite:///{tmp_path / 'wb.sqlite3'}")
    wake = _writes_of(database)
    assert wake is not None and not wake()
    with database.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    assert wake()
