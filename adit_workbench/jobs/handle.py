"""A job as a notebook sees it: status, progress, tasks, results, ``wait()`` and actions.

Everything is read from the database on each access, so the handle shows what workers on
other machines are doing. ``wait()`` draws a progress bar: tqdm's (the notebook widget
under Jupyter) when tqdm is installed, else a plain text line.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ..errors import TransferError, WorkbenchError
from ..store.jobs import Job, Task
from .status import FINAL_JOB_STATUSES, JobKind, JobStatus

if TYPE_CHECKING:
    import pandas as pd

    from .service import JobManager

__all__ = ["JobFailed", "JobHandle", "Progress"]


class JobFailed(TransferError):
    """``wait()`` ended on a job that failed (or was canceled); the message says why."""


@dataclass(frozen=True)
class Progress:
    """Tasks per status, and instances or items done where the executor reports them."""

    status: JobStatus
    total: int
    finished: int
    counts: dict[str, int]
    items_done: int
    items_total: int | None

    @property
    def fraction(self) -> float:
        """Finished tasks as a fraction of all tasks (1.0 for a job without tasks)."""
        return self.finished / self.total if self.total else 1.0

    def __str__(self) -> str:
        parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.counts.items()) if n)
        return f"{self.status}: {self.finished}/{self.total} tasks ({parts})"


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
        """Tasks per status and items done, as of now."""
        with self._manager.database.session() as session:
            job = session.get(Job, self.id)
            rows = session.execute(
                select(Task.status, func.count(), func.sum(Task.done), func.sum(Task.total))
                .where(Task.job_id == self.id)
                .group_by(Task.status)
            ).all()
        counts = {status: int(n) for status, n, _, _ in rows}
        total = sum(counts.values())
        finished = sum(n for s, n in counts.items() if s not in ("PENDING", "IN_PROGRESS"))
        items = sum(int(d or 0) for _, _, d, _ in rows)
        items_total = sum(int(t or 0) for _, _, _, t in rows) or None
        status = JobStatus(job.status) if job else JobStatus.CANCELED
        return Progress(status, total, finished, counts, items, items_total)

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
        return f"<Job {job.id} {job.kind} {job.status}: {job.message}>"

    def _repr_html_(self) -> str:
        from html import escape

        job = self._row()
        colour = {"SUCCESS": "green", "WARNING": "orange", "FAILURE": "red"}.get(job.status, "")
        return (
            f"<b>Job {job.id}</b> {escape(job.kind)} "
            f"<span style='color:{colour}'>{escape(job.status)}</span><br>"
            f"{escape(str(self.progress))}<br><i>{escape(job.message)}</i>"
        )

    # -- waiting -----------------------------------------------------------------------
    def wait(
        self,
        timeout: float | None = None,
        *,
        poll: float = 0.5,
        progress: bool = True,
        raise_on_failure: bool = True,
    ) -> JobHandle:
        """Block until the job is final; returns the handle (for chaining).

        Raises :class:`JobFailed` with the job's message when it ends FAILURE or CANCELED
        (unless ``raise_on_failure`` is False), :class:`TimeoutError` after ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _Bar(self.id) if progress else None
        try:
            while True:
                p = self.progress
                if bar is not None:
                    bar.update(p)
                if p.status in FINAL_JOB_STATUSES:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} is still {p.status} after {timeout} s")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()
        status = self.status
        if raise_on_failure and status in (JobStatus.FAILURE, JobStatus.CANCELED):
            raise JobFailed(f"job {self.id} ended {status}: {self.message}")
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


class _Bar:
    """tqdm when available (the notebook widget in Jupyter), else a plain text line."""

    def __init__(self, job_id: int) -> None:
        self._tqdm: Any = None
        self._last = ""
        self._tty = False
        self._job_id = job_id
        try:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=0, desc=f"job {job_id}", unit="task")
        except ImportError:
            pass

    def update(self, p: Progress) -> None:
        if self._tqdm is not None:
            self._tqdm.total = p.total
            self._tqdm.n = p.finished
            self._tqdm.set_postfix_str(p.status.value, refresh=True)
            return
        width = 30
        filled = int(width * p.fraction)
        line = f"job {self._job_id} [{'#' * filled}{'.' * (width - filled)}] {p}"
        if line != self._last:
            # A terminal redraws one line; a log file or pipe gets one line per change.
            # Jupyter's stream output honours \r like a terminal does.
            tty = sys.stderr.isatty() or "ipykernel" in sys.modules
            sys.stderr.write(f"\r{line}" if tty else f"{line}\n")
            sys.stderr.flush()
            self._last = line
            self._tty = tty

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._last and self._tty:
            sys.stderr.write("\n")
