"""``adit-workbench jobs …``, ``batch-query``, ``batch-transfer``, ``mass-transfer`` and
``worker``: the jobs layer from a terminal, through the workbench facade.

Creating commands print the job id (stdout) and, with ``--wait``, a plain progress line
(stderr) and the final message; the exit code is 1 when the job ends FAILURE or CANCELED.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigurationError
from . import app
from ._common import (
    ID,
    LazyChoice,
    clean,
    clean_frame,
    open_workbench,
    refuse_on_service,
    service_host_only,
)

if TYPE_CHECKING:
    from ..jobs import JobHandle

__all__ = ["jobs_group"]


@app.group("jobs")
def jobs_group() -> None:
    """List, inspect and act on jobs."""


def _statuses() -> list[str]:
    from ..jobs.status import JobStatus

    return [s.value for s in JobStatus]


@jobs_group.command("list")
@click.option(
    "--status",
    type=LazyChoice(_statuses, case_sensitive=False),
    help="Only jobs with this status (e.g. FAILURE).",
)
@click.option("--all", "all_users", is_flag=True, help="Everyone's jobs (staff).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
def list_cmd(status: str | None, all_users: bool, limit: int) -> None:
    """Your jobs, newest first."""
    frame = open_workbench().jobs.df(status=status, all_users=all_users, limit=limit)
    if frame.empty:
        click.echo("no jobs", err=True)
        return
    # Local handles give datetimes, the service ISO text: one display for both.
    frame["created"] = _datetimes(frame["created"]).dt.strftime("%Y-%m-%d %H:%M")
    columns = ["id", "kind", "status", "finished", "tasks", "created", "message"]
    if all_users:
        columns.insert(3, "owner")
    click.echo(clean_frame(frame[columns]).to_string(index=False))


def _datetimes(column: Any) -> Any:
    import pandas as pd

    if column.dtype.kind == "M":
        return column
    return pd.to_datetime(column, errors="coerce", utc=True, format="ISO8601")


@jobs_group.command("show")
@click.argument("job_id", type=ID)
def show_cmd(job_id: int) -> None:
    """A job's summary and its tasks."""
    job = open_workbench().jobs.get(job_id)
    for key, value in job.summary().items():
        click.echo(f"{key:>12}: {clean(value)}")
    tasks = job.tasks
    if not tasks.empty:
        click.echo("")
        shown = clean_frame(tasks[["task", "lines", "status", "attempts", "message"]])
        click.echo(shown.to_string(index=False))


def _action(name: str, help_text: str) -> None:
    @jobs_group.command(name, help=help_text)
    @click.argument("job_id", type=ID)
    def command(job_id: int) -> None:
        manager = open_workbench().jobs
        method = {"urgent": "make_urgent"}.get(name, name)
        result = getattr(manager, method)(job_id)
        count = f" ({result} task(s))" if isinstance(result, int) else ""
        click.echo(f"job {job_id}: {name} done{count}", err=True)


for _name, _help in (
    ("cancel", "Cancel a job: waiting tasks now, running ones at their next instance."),
    ("resume", "Run the canceled tasks of a canceled job again."),
    ("retry", "Run the failed tasks of a failed job again."),
    ("restart", "Run every task of a finished job again (staff)."),
    ("delete", "Delete a job that is not running."),
    ("verify", "Release an unverified job to the queue (staff)."),
    ("urgent", "Move a job's waiting tasks to the urgent priority."),
    ("requeue", "Queue a job's waiting tasks again (after Redis lost its queue)."),
):
    _action(_name, _help)


@jobs_group.command("reset-task")
@click.argument("task_id", type=ID)
def reset_task_cmd(task_id: int) -> None:
    """Run one finished task again."""
    open_workbench().jobs.reset_task(task_id)
    click.echo(f"task {task_id}: reset", err=True)


@jobs_group.command("export")
@click.argument("job_id", type=ID)
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--pseudonym-map", is_flag=True, help="Mass transfer: pseudonym ↔ original.")
def export_cmd(job_id: int, path: Path, pseudonym_map: bool) -> None:
    """Write a job's results (.csv or .xlsx)."""
    if pseudonym_map:
        refuse_on_service("the pseudonym map (jobs export --pseudonym-map)")
    job = open_workbench().jobs.get(job_id)
    written = job.results.pseudonym_map(path) if pseudonym_map else job.export(path)
    click.echo(str(written))


@jobs_group.command("leak-scan")
@click.argument("job_id", type=ID)
def leak_scan_cmd(job_id: int) -> None:
    """Search what a finished pseudonymized transfer delivered for any identifying value
    of its originals, fetched again from the source (exit 1 if one is found)."""
    from ..errors import PseudonymizationError

    report = open_workbench().jobs.get(job_id).leak_scan()
    click.echo(clean(report, keep_lines=True))
    if report:
        raise PseudonymizationError(f"{len(report.leaks)} identifying value(s) found in output")


def _finish(job: JobHandle, wait: bool) -> int:
    click.echo(str(job.id))
    if not wait:
        return 0
    job.wait(progress=True, raise_on_failure=False)
    click.echo(clean(f"job {job.id}: {job.status}: {job.message}"), err=True)
    return 1 if job.status in ("FAILURE", "CANCELED") else 0


_common = [
    click.option("--urgent", is_flag=True, help="Urgent priority (needs the permission)."),
    click.option("--project", "project_name", default="", help="Project name."),
    click.option("--mail", "send_finished_mail", is_flag=True, help="Mail me when done."),
    click.option("--wait", is_flag=True, help="Wait and show progress."),
]


def _options(func: Any) -> Any:
    for option in reversed(_common):
        func = option(func)
    return func


@app.command("batch-query")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "source", required=True, help="Node to query.")
@_options
def batch_query_cmd(file: Path, source: str, wait: bool, **options: Any) -> int:
    """Query a node for every row of FILE (.csv or .xlsx, ADIT's columns)."""
    return _finish(open_workbench().batch_query(file, source=source, **options), wait)


@app.command("batch-transfer")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "source", required=True, help="Source node.")
@click.option("--to", "destination", required=True, help="Destination node.")
@click.option("--ethics", "ethics_approval_id", default="", help="Ethics approval id.")
@click.option("--trial-id", "trial_protocol_id", default="", help="ClinicalTrialProtocolID.")
@click.option("--trial-name", "trial_protocol_name", default="", help="Trial name.")
@_options
def batch_transfer_cmd(
    file: Path, source: str, destination: str, wait: bool, **options: Any
) -> int:
    """Transfer the studies of FILE (PatientID, StudyInstanceUID, SeriesInstanceUID,
    Pseudonym); rows of one study become one task."""
    wb = open_workbench()
    return _finish(wb.batch_transfer(file, source=source, to=destination, **options), wait)


@app.command("mass-transfer")
@click.option("--from", "source", required=True, help="Source node.")
@click.option("--to", "destination", required=True, help="Destination node.")
@click.option("--start", required=True, type=click.DateTime(["%Y-%m-%d", "%Y%m%d"]),
              help="First study date (YYYY-MM-DD).")  # fmt: skip
@click.option("--end", required=True, type=click.DateTime(["%Y-%m-%d", "%Y%m%d"]),
              help="Last study date (YYYY-MM-DD).")  # fmt: skip
@click.option("--filters", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file with the include/exclude filters.")  # fmt: skip
@click.option("--weekly", is_flag=True, help="One task per week instead of per day.")
@click.option("--project", "project_name", default="", help="Project name (pseudonym key).")
@click.option("--mail", "send_finished_mail", is_flag=True, help="Mail me when done.")
@click.option("--wait", is_flag=True, help="Wait and show progress.")
def mass_transfer_cmd(
    source: str, destination: str, start: datetime, end: datetime, filters: Path, weekly: bool,
    wait: bool, **options: Any,
) -> int:  # fmt: skip
    """Transfer every series from START to END that passes the filters."""
    job = open_workbench().mass_transfer(
        source=source, to=destination, start=start.date(), end=end.date(), filters=str(filters),
        granularity="weekly" if weekly else "daily", **options,
    )  # fmt: skip
    return _finish(job, wait)


@app.group("worker", invoke_without_command=True)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--simple", is_flag=True, help="Run tasks in this process (no fork per task).")
@click.option("--name", help="Worker name (default: RQ's).")
@click.option("--queue-prefix", default=None, help="Queue-name prefix (default adit-wb).")
@click.pass_context
def worker_cmd(
    ctx: click.Context, burst: bool, simple: bool, name: str | None, queue_prefix: str | None
) -> None:
    """Run an RQ worker for job tasks (needs ADIT_WB_REDIS_URL; run as many as you like).

    Without Redis, jobs run in a local worker process per data directory, started when
    a job is submitted: see `worker status` and `worker stop`.
    """
    if ctx.invoked_subcommand is not None:
        return
    service_host_only(lambda: None)()
    from ..config import get_settings
    from ..jobs import defaults
    from ..jobs.worker import run_worker

    settings = get_settings()
    if settings.redis_url is None:
        raise ConfigurationError(
            "set ADIT_WB_REDIS_URL: workers take tasks from Redis (without Redis, the local "
            "worker starts by itself when a job is submitted)"
        )
    run_worker(
        settings.redis_url.get_secret_value(),
        prefix=queue_prefix or defaults.QUEUE_PREFIX,
        burst=burst,
        simple=simple,
        name=name,
    )


@worker_cmd.command("stop")
@service_host_only
def worker_stop_cmd() -> None:
    """Stop the local worker of this data directory (its unfinished tasks stay PENDING)."""
    from ..config import get_settings
    from ..jobs.local import stop_worker

    stopped = stop_worker(get_settings())
    click.echo("local worker stopped" if stopped else "local worker was not running", err=True)


@worker_cmd.command("status")
@service_host_only
def worker_status_cmd() -> None:
    """Whether the local worker of this data directory runs."""
    from ..config import get_settings
    from ..jobs.local import worker_status

    status = worker_status(get_settings())
    if not status.running:
        click.echo(f"local worker: not running ({status.root})")
        return
    beat = "" if status.beat_age is None else f", last beat {status.beat_age:.0f} s ago"
    click.echo(f"local worker: pid {status.pid}{beat}, database {status.database}")
