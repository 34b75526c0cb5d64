"""A job as a notebook sees it: status, progress, tasks, results, ``wait()`` and actions.

Everything is read from the database on each access, so the handle shows what workers on
other machines are doing. ``wait()`` draws a progress bar: tqdm's (the notebook widget
under Jupyter) when tqdm is installed, else a plain text line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import Dataset
from sqlalchemy import func, select

from ..errors import WorkbenchError
from ..store.jobs import Job, Task
from . import defaults
from .progress import JobFailed, NoRunner, Progress, files_changed, follow, format_seconds
from .status import FINAL_JOB_STATUSES, JobKind, JobStatus

if TYPE_CHECKING:
    import pandas as pd

    from ..deid.leaks import LeakReport
    from .service import JobManager

__all__ = ["JobFailed", "JobHandle", "NoRunner", "Progress"]


#: Failed tasks named in a JobFailed message (the rest are counted).
FIRST_REASONS = 3


class JobHandle:
    """One job; get it from ``wb.transfer(...)``, ``wb.batch_query(...)`` or ``wb.jobs[id]``."""

    def __init__(self, manager: JobManager, job_id: int) -> None:
        self._manager = manager
        self.id = job_id

    def _row(self) -> Job:
        with self._manager.database.session() as session:
            job = session.get(Job, self.id)
        if job is None:
            from ..errors import NotFound

            raise NotFound(f"no job {self.id}")
        return job

    # -- state -------------------------------------------------------------------------
    @property
    def kind(self) -> JobKind:
        """What the job does."""
        return JobKind(self._row().kind)

    @property
    def status(self) -> JobStatus:
        """The job's status as of now."""
        return JobStatus(self._row().status)

    @property
    def message(self) -> str:
        """The job's message (a summary of its tasks' outcomes)."""
        return self._row().message

    @property
    def done(self) -> bool:
        """Whether the job has reached a final status."""
        return self.status in FINAL_JOB_STATUSES

    @property
    def progress(self) -> Progress:
        """Tasks per status, instances and bytes done, retries and failures, as of now."""
        with self._manager.database.session() as session:
            job = session.get(Job, self.id)
            rows = session.execute(
                select(
                    Task.status,
                    func.count(),
                    func.sum(Task.done),
                    func.sum(Task.total),
                    func.sum(Task.bytes_done),
                    func.sum(Task.bytes_total),
                )
                .where(Task.job_id == self.id)
                .group_by(Task.status)
            ).all()
            retries = list(
                session.scalars(
                    select(Task.message)
                    .where(Task.job_id == self.id, Task.status == "PENDING", Task.attempts > 0)
                    .order_by(Task.id)
                    .limit(3)
                )
            )
        counts = {status: int(n) for status, n, *_ in rows}
        total = sum(counts.values())
        finished = sum(n for s, n in counts.items() if s not in ("PENDING", "IN_PROGRESS"))
        items = sum(int(r[2] or 0) for r in rows)
        items_total = sum(int(r[3] or 0) for r in rows) or None
        status = JobStatus(job.status) if job else JobStatus.CANCELED
        return Progress(
            status,
            total,
            finished,
            counts,
            items,
            items_total,
            bytes_done=sum(int(r[4] or 0) for r in rows),
            bytes_total=sum(int(r[5] or 0) for r in rows) or None,
            retries=[m for m in retries if m],
        )

    def reasons(self, limit: int = FIRST_REASONS) -> tuple[list[str], int]:
        """The first ``limit`` failed (else canceled) tasks as ``task N (study UID): why``,
        and how many failed in all."""
        with self._manager.database.session() as session:
            for status in ("FAILURE", "CANCELED"):
                where = (Task.job_id == self.id, Task.status == status)
                count = session.scalar(select(func.count()).where(*where)) or 0
                if not count:
                    continue
                rows = session.execute(
                    select(Task.id, Task.study_uid, Task.lines, Task.message)
                    .where(*where)
                    .order_by(Task.id)
                    .limit(limit)
                ).all()
                first = session.scalar(select(func.min(Task.id)).where(Task.job_id == self.id))
                out = []
                for task_id, uid, lines, message in rows:
                    what = f"task {task_id - (first or task_id) + 1}"
                    if uid:
                        what += f" (study {uid})"
                    elif lines:
                        what += f" (line {','.join(map(str, lines))})"
                    out.append(f"{what}: {message or status.lower()}")
                return out, int(count)
        return [], 0

    def summary(self) -> dict[str, Any]:
        """One line about the job (used by lists and the CLI)."""
        job = self._row()
        p = self.progress
        return {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "owner": job.owner,
            "source": job.source,
            "destination": job.destination,
            "urgent": job.urgent,
            "created": job.created,
            "tasks": p.total,
            "finished": p.finished,
            "message": job.message,
        }

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per task: id, lines, status, attempts, message, times (no patient data)."""
        import pandas as pd

        with self._manager.database.session() as session:
            rows = session.scalars(select(Task).where(Task.job_id == self.id).order_by(Task.id))
            data = [
                {
                    "task": t.id,
                    "lines": ",".join(map(str, t.lines)),
                    "status": t.status,
                    "attempts": t.attempts,
                    "done": t.done,
                    "total": t.total,
                    "message": t.message,
                    "started": t.started,
                    "ended": t.ended,
                }
                for t in rows
            ]
        return pd.DataFrame(data)

    def __repr__(self) -> str:
        job = self._row()
        return f"<Job {job.id} {job.kind} {self.progress}: {job.message}>"

    def _repr_html_(self) -> str:
        from html import escape

        job = self._row()
        p = self.progress
        colour = {
            "SUCCESS": "green", "WARNING": "darkorange", "FAILURE": "red", "CANCELED": "grey"
        }.get(job.status, "steelblue")  # fmt: skip
        pct = round(100 * p.fraction)
        reasons, failed = self.reasons() if job.status in _FAILED else ([], 0)
        why = "".join(f"<li>{escape(r)}</li>" for r in reasons)
        if failed > len(reasons):
            why += f"<li>… and {failed - len(reasons)} more</li>"
        route = " → ".join(escape(x) for x in (job.source, job.destination) if x)
        return (
            f"<div><b>Job {job.id}</b> {escape(job.kind)} {route} "
            f"<span style='color:{colour};font-weight:bold'>{escape(job.status)}</span>"
            f"<div style='background:#eee;width:20em;height:0.6em'>"
            f"<div style='background:{colour};width:{pct}%;height:100%'></div></div>"
            f"{escape(str(p))}<br><i>{escape(job.message)}</i>"
            + (f"<ul>{why}</ul>" if why else "")
            + "</div>"
        )

    # -- waiting -----------------------------------------------------------------------
    def wait(
        self,
        timeout: float | None = None,
        *,
        poll: float = 0.5,
        progress: bool = True,
        raise_on_failure: bool = True,
        cancel_on_interrupt: bool = False,
    ) -> JobHandle:
        """Block until the job is final; returns the handle (for chaining).

        The job runs in a worker, not here: Ctrl-C (a kernel interrupt) stops waiting and
        says how to cancel; with ``cancel_on_interrupt`` it cancels the job too.

        Raises:
            JobFailed: The job ended FAILURE or CANCELED (unless ``raise_on_failure`` is
                False); the message carries the first failed tasks' reasons.
            NoRunner: No worker ran the job's tasks for
                :data:`~.defaults.NO_RUNNER_GRACE` seconds (and none could be started).
            TimeoutError: After ``timeout`` seconds.
        """
        failed = 0

        def why() -> list[str]:
            nonlocal failed
            reasons, failed = self.reasons()
            return reasons

        last, reasons = follow(
            self.id,
            lambda: self.progress,
            timeout=timeout,
            poll=poll,
            progress=progress,
            cancel=self.cancel if cancel_on_interrupt else None,
            how_to_cancel=(
                f"Stop it with wb.jobs[{self.id}].cancel() or `adit-workbench jobs cancel "
                f"{self.id}`; see it with wb.jobs[{self.id}].wait()."
            ),
            reasons=why,
            watch=_Watchdog(self).check,
            wake=_writes_of(self._manager.database),
        )
        status = last.status
        if raise_on_failure and status in _FAILED:
            verb = "failed" if status is JobStatus.FAILURE else "was canceled"
            text = "; ".join(reasons) or self.message
            more = failed - len(reasons)
            if more > 0:
                text += f" (and {more} more)"
            raise JobFailed(
                f"job {self.id} {verb}: {text}", job_id=self.id, status=status, reasons=reasons
            )
        return self

    # -- results -----------------------------------------------------------------------
    @property
    def results(self) -> Any:
        """Batch query: the found studies (and failed rows) with ``.df``, ``.to_csv()``,
        ``.to_excel()``. Mass transfer: one row per series."""
        from .export import BatchQueryResults, MassTransferResults

        kind = self.kind
        if kind is JobKind.BATCH_QUERY:
            return BatchQueryResults(self._manager.database, self.id)
        if kind is JobKind.MASS_TRANSFER:
            return MassTransferResults(self._manager, self.id)
        raise WorkbenchError(f"job {self.id} is a {kind.value}; it has no result table")

    def export(self, path: str | Path) -> Path:
        """Write :attr:`results` to ``path`` (.csv or .xlsx)."""
        return Path(self.results.export(path))

    def leak_scan(self, *, ignore: Iterable[str] | None = None) -> LeakReport:
        """Look for every identifying value of the originals in what this job delivered.

        For a finished, pseudonymized transfer to a folder: the originals of each study
        (or series) a task delivered are fetched again from the source, streamed, through
        this user's node (the source role is checked and the fetch audited) and the
        scanner (:func:`~adit_workbench.deid.scan_leaks`) searches every file and folder
        name below the job's folder. Values are masked in the report. ``ignore`` names
        leak kinds the job kept on purpose; by default ``date`` when the job retained
        full dates, ``uid`` when it retained UIDs, ``device`` when it kept device identity.
        """
        from ..access.guarded import GuardedNode
        from ..access.permissions import NodeRole
        from ..deid.leaks import scan_leaks
        from ..dicom.node import open_node
        from ..dicom.spec import FolderSpec
        from ..errors import InputError
        from ..store import nodes as node_store
        from .execute import job_folder_name

        job = self._row()
        kind = JobKind(job.kind)
        if not kind.is_transfer:
            raise InputError(f"job {self.id} is a {kind.value}: only transfers deliver files")
        if JobStatus(job.status) not in FINAL_JOB_STATUSES:
            raise InputError(f"job {self.id} is {job.status}: wait() for it before a leak scan")
        if not job.pseudonymize:
            raise InputError(f"job {self.id} delivered the originals unpseudonymized")
        if job.has_archive_password:
            raise InputError(f"job {self.id} delivered an encrypted archive: nothing to scan")
        access = self._manager.access
        access.require_node(str(job.destination), NodeRole.DESTINATION, action="job.leak_scan")
        with self._manager.database.session() as session:
            destination = node_store.get_node(session, str(job.destination))
        if not isinstance(destination, FolderSpec):
            raise InputError(f"job {self.id} delivered to a server: only folders can be scanned")
        row = {"created": job.created, "kind": job.kind, "id": job.id, "owner": job.owner}
        name = str((job.params or {}).get("folder_name") or job_folder_name(row))
        folder = destination.path / name
        outputs = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        if not outputs:
            raise InputError(f"job {self.id}: no delivered files in its folder {name!r}")
        done = [t for t in self._task_rows() if t.status in ("SUCCESS", "WARNING")]
        nodes: dict[str, GuardedNode] = {}

        def originals() -> Iterator[Any]:
            for task in done:
                source = str(task.source or job.source)
                if source not in nodes:
                    with self._manager.database.session() as session:
                        spec = node_store.get_node(session, source)
                    live = open_node(spec, self._manager.settings)
                    nodes[source] = GuardedNode(live, access, self._manager.settings)
                wanted: list[str | None] = [*task.series_uids] or [None]
                for series in wanted:
                    query = Dataset()
                    query.StudyInstanceUID = task.study_uid
                    if series:
                        query.SeriesInstanceUID = series
                    yield from nodes[source].retrieve("SERIES" if series else "STUDY", query)

        try:
            report = scan_leaks(
                originals(),
                outputs,
                ignore=_kept_on_purpose(job.deid_options) if ignore is None else ignore,
                output_root=folder,
            )
        finally:
            for node in nodes.values():
                node.close()
        # Paths below the destination, as the user knows them (the service's own
        # directory layout is not the client's business).
        base = str(destination.path).rstrip("/") + "/"
        report.leaks = [replace(x, file=x.file.removeprefix(base)) for x in report.leaks]
        report.unreadable = [u.removeprefix(base) for u in report.unreadable]
        return report

    def _task_rows(self) -> list[Task]:
        with self._manager.database.session() as session:
            rows = session.scalars(select(Task).where(Task.job_id == self.id).order_by(Task.id))
            return list(rows)

    # -- actions -----------------------------------------------------------------------
    def cancel(self) -> None:
        """Cancel: waiting tasks now, running ones at their next instance."""
        self._manager.cancel(self.id)

    def resume(self, *, archive_password: str | None = None) -> int:
        """Run the canceled tasks again. (An archive job needs its password again.)"""
        return self._manager.resume(self.id, archive_password=archive_password)

    def retry(self, *, archive_password: str | None = None) -> int:
        """Run the failed tasks again. (An archive job needs its password again.)"""
        return self._manager.retry(self.id, archive_password=archive_password)

    def restart(self, *, archive_password: str | None = None) -> int:
        """Staff: run every task again. (An archive job needs its password again.)"""
        return self._manager.restart(self.id, archive_password=archive_password)

    def make_urgent(self) -> None:
        """Move the waiting tasks to the urgent priority."""
        self._manager.make_urgent(self.id)

    def delete(self) -> None:
        """Delete the job (not while it runs)."""
        self._manager.delete(self.id)


_FAILED = (JobStatus.FAILURE, JobStatus.CANCELED)


def _kept_on_purpose(options: Iterable[str] | None) -> list[str]:
    """Leak kinds a job's de-identification options keep (the scanner must not count)."""
    from ..deid.profile import Option

    kept = Option(0)
    for name in options or []:
        kept |= Option.parse(name)
    kinds = []
    if kept & (Option.RETAIN_LONG_FULL_DATES | Option.RETAIN_LONG_MODIFIED_DATES):
        kinds.append("date")
    if kept & Option.RETAIN_UIDS:
        kinds.append("uid")
    if kept & Option.RETAIN_DEVICE_IDENTITY:
        kinds.append("device")
    return kinds


class _Watchdog:
    """Notices when nothing runs a waiting job: starts the local worker, else raises."""

    def __init__(self, handle: JobHandle, every: float = 2.0) -> None:
        self.handle = handle
        self.every = every
        self._next = time.monotonic() + every
        self._dead_since: float | None = None
        self._woken = False

    def check(self, status: JobStatus) -> None:
        now = time.monotonic()
        if now < self._next or status is JobStatus.UNVERIFIED:
            return
        self._next = now + self.every
        manager = self.handle._manager
        if manager.runner_alive():
            self._dead_since = None
            return
        if self._dead_since is None:
            self._dead_since = now
        problem = manager.wake_runner()
        if problem is None:
            if not self._woken:
                sys.stderr.write(f"job {self.handle.id}: no worker was running; started one\n")
                self._woken = True
            self._dead_since = None
            return
        if now - self._dead_since >= defaults.NO_RUNNER_GRACE:
            waited = format_seconds(now - self._dead_since)
            raise NoRunner(
                f"job {self.handle.id} is {status} but nothing has run its tasks for "
                f"{waited}: {problem}"
            )


def _writes_of(database: Any) -> Callable[[], bool] | None:
    """For a SQLite database, whether its file or write-ahead log changed (a worker wrote
    progress or an outcome); None for other databases."""
    name = database.engine.url.database if getattr(database, "is_sqlite", False) else None
    if not name or name == ":memory:":
        return None
    return files_changed([Path(name), Path(f"{name}-wal")])
