"""Jobs seen through the service: the handle and manager a notebook uses, over HTTP.

:class:`RemoteJobHandle` mirrors :class:`~adit_workbench.jobs.JobHandle` (status,
progress, tasks, results, ``wait()`` with a progress bar, the actions) and
:class:`RemoteJobManager` mirrors ``wb.jobs``. Every property reads the service again, as
the local handle reads the database again. ``wait()`` keeps polling while the service
restarts (reads reconnect by themselves).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..jobs.progress import JobFailed, Progress, follow
from ..jobs.status import FINAL_JOB_STATUSES, JobKind, JobStatus
from .client import ServiceUnavailable

if TYPE_CHECKING:
    import pandas as pd

    from ..deid.leaks import LeakReport
    from .client import ServiceClient

__all__ = ["RemoteJobHandle", "RemoteJobManager", "RemoteJobResults"]


def _progress(data: dict[str, Any]) -> Progress:
    return Progress(
        JobStatus(data["status"]),
        int(data["total"]),
        int(data["finished"]),
        {str(k): int(v) for k, v in data["counts"].items()},
        int(data["items_done"]),
        data.get("items_total"),
        bytes_done=int(data.get("bytes_done") or 0),
        bytes_total=data.get("bytes_total"),
        retries=[str(m) for m in data.get("retries") or []],
        failures=[str(m) for m in data.get("failures") or []],
    )


class RemoteJobResults:
    """A job's result table (batch query, mass transfer) fetched from the service."""

    def __init__(self, client: ServiceClient, job_id: int) -> None:
        self._client = client
        self.job_id = job_id

    @property
    def df(self) -> pd.DataFrame:
        """The result table as a DataFrame (the columns of the local results)."""
        import pandas as pd

        data = self._client.get(f"api/jobs/{self.job_id}/results")
        return pd.DataFrame(data["rows"], columns=data["columns"])

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        return f"<RemoteJobResults job={self.job_id}>"

    def export(self, path: str | Path) -> Path:
        """Write .csv or .xlsx by the suffix of ``path`` (written by the service)."""
        target = Path(path)
        fmt = target.suffix.lower().lstrip(".")
        if fmt not in ("csv", "xlsx"):
            from ..errors import InputError

            raise InputError(f"export to .csv or .xlsx, not {target.suffix or '(no suffix)'}")
        response = self._client.request("GET", f"api/jobs/{self.job_id}/results?format={fmt}")
        target.write_bytes(response.content)
        return target

    to_csv = export
    to_excel = export


class RemoteJobHandle:
    """One job of the service; get it from ``wb.transfer(...)`` or ``wb.jobs[id]``."""

    def __init__(self, client: ServiceClient, job_id: int) -> None:
        self._client = client
        self.id = job_id

    def _show(self) -> dict[str, Any]:
        data: dict[str, Any] = self._client.get(f"api/jobs/{self.id}")
        return data

    @property
    def kind(self) -> JobKind:
        """What the job does."""
        return JobKind(self._show()["kind"])

    @property
    def status(self) -> JobStatus:
        """The job's status as of now."""
        return JobStatus(self._show()["status"])

    @property
    def message(self) -> str:
        """The job's message."""
        return str(self._show()["message"])

    @property
    def done(self) -> bool:
        """Whether the job has reached a final status."""
        return self.status in FINAL_JOB_STATUSES

    @property
    def progress(self) -> Progress:
        """Tasks per status and items done, as of now."""
        return _progress(self._client.get(f"api/jobs/{self.id}/progress"))

    def summary(self) -> dict[str, Any]:
        """One line about the job (id, kind, status, owner, … as the local handle)."""
        data = self._show()
        data.pop("progress", None)
        return data

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per task: id, lines, status, attempts, message, times."""
        import pandas as pd

        frame = pd.DataFrame(self._client.get(f"api/jobs/{self.id}/tasks"))
        for column in ("started", "ended"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], errors="coerce")
        return frame

    def _reasons(self, limit: int = 3) -> list[str]:
        """The first failed (else canceled) tasks' messages, as the local handle gives."""
        tasks = self._client.get(f"api/jobs/{self.id}/tasks")
        for status in ("FAILURE", "CANCELED"):
            chosen = [t for t in tasks if t.get("status") == status]
            if chosen:
                return [f"task {t.get('id')}: {t.get('message') or status}" for t in chosen[:limit]]
        return []

    def __repr__(self) -> str:
        data = self._show()
        return f"<Job {data['id']} {data['kind']} {data['status']}: {data['message']}>"

    def _repr_html_(self) -> str:
        from html import escape

        data = self._show()
        colour = {"SUCCESS": "green", "WARNING": "orange", "FAILURE": "red"}.get(data["status"], "")
        return (
            f"<b>Job {data['id']}</b> {escape(data['kind'])} "
            f"<span style='color:{colour}'>{escape(data['status'])}</span><br>"
            f"{escape(str(_progress(data['progress'])))}<br><i>{escape(data['message'])}</i>"
        )

    def wait(
        self,
        timeout: float | None = None,
        *,
        poll: float = 0.5,
        progress: bool = True,
        raise_on_failure: bool = True,
        cancel_on_interrupt: bool = False,
    ) -> RemoteJobHandle:
        """Block until the job is final; returns the handle (for chaining).

        The job runs in the service's workers, not here: Ctrl-C (a kernel interrupt)
        stops waiting and says how to cancel; with ``cancel_on_interrupt`` it cancels the
        job too. The bar and its final line are the local workbench's.

        Raises :class:`~adit_workbench.jobs.JobFailed` when it ends FAILURE or CANCELED
        (unless ``raise_on_failure`` is False), :class:`TimeoutError` after ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        data: dict[str, Any] = {}

        def read() -> Progress | None:
            nonlocal data
            try:
                data = self._client.get(f"api/jobs/{self.id}/progress")
            except ServiceUnavailable:
                # The service restarts (its reads already retried for a while): the job
                # goes on without it, so keep waiting until our own deadline.
                if deadline is not None and time.monotonic() > deadline:
                    raise
                time.sleep(max(poll, 1.0))
                return None
            return _progress(data)

        last, reasons = follow(
            self.id,
            read,
            timeout=timeout,
            poll=poll,
            progress=progress,
            cancel=self.cancel if cancel_on_interrupt else None,
            how_to_cancel=(
                f"Stop it with wb.jobs[{self.id}].cancel(); see it with wb.jobs[{self.id}].wait()."
            ),
            reasons=self._reasons,
        )
        status = last.status
        failed = status in (JobStatus.FAILURE, JobStatus.CANCELED)
        if raise_on_failure and failed:
            verb = "failed" if status is JobStatus.FAILURE else "was canceled"
            text = "; ".join(reasons) or str(data.get("message", ""))
            raise JobFailed(
                f"job {self.id} {verb}: {text}", job_id=self.id, status=status, reasons=reasons
            )
        return self

    @property
    def results(self) -> RemoteJobResults:
        """Batch query or mass transfer: the result table (``.df``, ``.export()``)."""
        kind = self.kind
        if kind not in (JobKind.BATCH_QUERY, JobKind.MASS_TRANSFER):
            from ..errors import WorkbenchError

            raise WorkbenchError(f"job {self.id} is a {kind.value}; it has no result table")
        return RemoteJobResults(self._client, self.id)

    def export(self, path: str | Path) -> Path:
        """Write :attr:`results` to ``path`` (.csv or .xlsx)."""
        return self.results.export(path)

    def leak_scan(self, *, ignore: Iterable[str] | None = None) -> LeakReport:
        """Scan what this finished transfer delivered for identifying values of the
        originals; the service runs the scan where the files are (see
        :meth:`adit_workbench.jobs.JobHandle.leak_scan`) and sends the masked report."""
        from ..deid.leaks import Leak, LeakReport

        params = {"ignore": list(ignore)} if ignore is not None else None
        data = self._client.get(f"api/jobs/{self.id}/leak-scan", params=params)
        return LeakReport(
            leaks=[Leak(**leak) for leak in data["leaks"]],
            files_scanned=int(data["files_scanned"]),
            values_collected=int(data["values_collected"]),
            unreadable=[str(u) for u in data["unreadable"]],
        )

    def _act(self, action: str, archive_password: str | None = None) -> Any:
        body = {"archive_password": archive_password} if archive_password else None
        return self._client.post(f"api/jobs/{self.id}/{action}", body)

    def cancel(self) -> None:
        """Cancel: waiting tasks now, running ones at their next instance."""
        self._act("cancel")

    def resume(self, *, archive_password: str | None = None) -> int:
        """Run the canceled tasks again."""
        return int(self._act("resume", archive_password)["tasks_reset"])

    def retry(self, *, archive_password: str | None = None) -> int:
        """Run the failed tasks again."""
        return int(self._act("retry", archive_password)["tasks_reset"])

    def restart(self, *, archive_password: str | None = None) -> int:
        """Staff: run every task again."""
        return int(self._act("restart", archive_password)["tasks_reset"])

    def make_urgent(self) -> None:
        """Move the waiting tasks to the urgent priority."""
        self._act("urgent")

    def delete(self) -> None:
        """Delete the job (not while it runs)."""
        self._client.request("DELETE", f"api/jobs/{self.id}")


class RemoteJobManager:
    """``wb.jobs`` of a remote workbench: list, ``[id]`` and the actions by id."""

    def __init__(self, client: ServiceClient) -> None:
        self._client = client

    def get(self, job_id: int) -> RemoteJobHandle:
        """The job ``job_id`` (owner or staff only)."""
        self._client.get(f"api/jobs/{int(job_id)}")
        return RemoteJobHandle(self._client, int(job_id))

    __getitem__ = get

    #: Jobs shown by the notebook repr (``wb.jobs``); the rest through :meth:`list`.
    REPR_JOBS = 20

    def _table(self) -> tuple[list[dict[str, Any]], bool]:
        rows = self._client.get("api/jobs", params={"limit": self.REPR_JOBS + 1})
        shown = []
        for row in rows[: self.REPR_JOBS]:
            p = _progress(row["progress"]) if "progress" in row else None
            done, total = p.done_total if p is not None else (0, 0)
            unit = p.unit if p is not None else "tasks"
            shown.append({**row, "progress": f"{done}/{total} {unit}"})
        return shown, len(rows) > self.REPR_JOBS

    def __repr__(self) -> str:
        rows, more = self._table()
        head = f"<RemoteJobManager: {len(rows)}{'+' if more else ''} job(s)>"
        lines = [head] + [
            f"  {r['id']:>5}  {r['kind']:<18} {r['status']:<11} {r['progress']:<20} "
            f"{str(r.get('created', ''))[:16]}  {str(r.get('message', ''))[:60]}"
            for r in rows
        ]
        if more:
            lines.append("  … wb.jobs.list() or wb.jobs.df() for all")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        rows, more = self._table()
        if not rows:
            return "<i>No jobs yet.</i>"
        colours = {"SUCCESS": "green", "WARNING": "darkorange", "FAILURE": "red"}
        cols = ("id", "kind", "status", "progress", "source", "destination", "created")
        head = "".join(f"<th>{c}</th>" for c in (*cols, "message"))
        body = []
        for r in rows:
            cells = []
            for c in cols:
                text = escape(str(r.get(c) or ""))[: 19 if c == "created" else 200]
                if c == "status":
                    text = f"<span style='color:{colours.get(r[c], 'inherit')}'>{text}</span>"
                cells.append(f"<td>{text}</td>")
            cells.append(f"<td>{escape(str(r.get('message') or ''))[:120]}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        note = "<p><i>… wb.jobs.list() or wb.jobs.df() for all</i></p>" if more else ""
        return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"

    def list(
        self, *, status: str | JobStatus | None = None, all_users: bool = False, limit: int = 100
    ) -> list[RemoteJobHandle]:
        """This user's jobs, newest first (staff: everyone's with ``all_users``)."""
        params: dict[str, Any] = {"all_users": all_users, "limit": limit}
        if status is not None:
            params["status"] = str(getattr(status, "value", status))
        rows = self._client.get("api/jobs", params=params)
        return [RemoteJobHandle(self._client, int(row["id"])) for row in rows]

    def instances_per_modality(self, job_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """Instances each job's transfer tasks delivered, per modality (the jobs chart)."""
        ids = sorted({int(i) for i in job_ids})
        if not ids:
            return {}
        data = self._client.get("api/jobs/modalities", params={"ids": ids})
        return {int(k): {str(m): int(n) for m, n in v.items()} for k, v in data.items()}

    def df(self, **kwargs: Any) -> pd.DataFrame:
        """:meth:`list` as a DataFrame."""
        import pandas as pd

        return pd.DataFrame([j.summary() for j in self.list(**kwargs)])

    def cancel(self, job_id: int) -> None:
        """Cancel a job."""
        RemoteJobHandle(self._client, job_id).cancel()

    def resume(self, job_id: int, *, archive_password: str | None = None) -> int:
        """Run a canceled job's canceled tasks again."""
        return RemoteJobHandle(self._client, job_id).resume(archive_password=archive_password)

    def retry(self, job_id: int, *, archive_password: str | None = None) -> int:
        """Run a failed job's failed tasks again."""
        return RemoteJobHandle(self._client, job_id).retry(archive_password=archive_password)

    def restart(self, job_id: int, *, archive_password: str | None = None) -> int:
        """Staff: run every task again."""
        return RemoteJobHandle(self._client, job_id).restart(archive_password=archive_password)

    def verify(self, job_id: int) -> None:
        """Staff: release an UNVERIFIED job."""
        RemoteJobHandle(self._client, job_id)._act("verify")

    def make_urgent(self, job_id: int) -> None:
        """Move a job's waiting tasks to the urgent priority."""
        RemoteJobHandle(self._client, job_id).make_urgent()

    def requeue(self, job_id: int) -> int:
        """Queue the job's waiting tasks again."""
        return int(RemoteJobHandle(self._client, job_id)._act("requeue")["tasks_reset"] or 0)

    def delete(self, job_id: int) -> None:
        """Delete a job that has not started or has finished."""
        RemoteJobHandle(self._client, job_id).delete()

    def reset_task(self, task_id: int, *, archive_password: str | None = None) -> None:
        """Run one finished task again."""
        body = {"archive_password": archive_password} if archive_password else None
        self._client.post(f"api/jobs/tasks/{int(task_id)}/reset", body)
