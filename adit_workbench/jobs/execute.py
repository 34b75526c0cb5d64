"""What a task does, per job kind: the only place the jobs layer calls queries and transfers.

:func:`run_transfer_task` is the one adapter to the transfer layer
(:func:`adit_workbench.transfer.transfer_study`); selective, batch and mass transfers all
go through it. Queue-mechanics tests may replace :data:`TRANSFER` with a stand-in; in
production it stays None and the real transfer is imported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from typing import Any

from sqlalchemy import delete

from ..config import Settings
from ..deid import Pseudonymizer, project_pseudonymizer
from ..dicom.node import Node, open_node
from ..errors import InputError
from ..store import nodes as node_store
from ..store.jobs import BatchQueryResult
from .runner import TaskContext, TaskOutcome
from .status import JobKind, TaskStatus

__all__ = [
    "EXECUTORS",
    "TRANSFER",
    "build_pseudonymizer",
    "open_task_node",
    "run_batch_query_task",
    "run_transfer_task",
    "transfer_one",
]

#: Test hook: a stand-in for ``transfer_study`` (queue-mechanics tests only).
TRANSFER: Callable[..., Any] | None = None


def _transfer_function() -> Callable[..., Any]:
    if TRANSFER is not None:
        return TRANSFER
    from .. import transfer

    return getattr(transfer, "transfer_study")  # noqa: B009 (lands with the transfer layer)


def open_task_node(ctx: TaskContext, name: str) -> Node:
    """The live node ``name`` (access was checked when the task started)."""
    with ctx.database.session() as session:
        spec = node_store.get_node(session, name)
    return open_node(spec, ctx.settings)


def build_pseudonymizer(
    settings: Settings, job: dict[str, Any], pseudonym: str | None
) -> Pseudonymizer | None:
    """The job's pseudonymizer for one patient, or None for an unpseudonymized job.

    The key is the project's (master secret + project name), so that two jobs of one
    project give one patient the same UIDs and dates, and two projects cannot be linked.
    """
    if not job.get("pseudonymize", True):
        return None
    # One recipe for "the project's pseudonymizer": a notebook's wb.pseudonymizer(),
    # the CLI and every job build it here, so they cannot drift apart.
    return project_pseudonymizer(
        settings,
        project=job.get("project_name") or None,
        pseudonym=pseudonym or None,
        options=job.get("deid_options") or (),
        trial_id=job.get("trial_protocol_id") or None,
        trial_name=job.get("trial_protocol_name") or None,
    )


def _progress_callback(ctx: TaskContext, base: int = 0) -> Callable[..., None]:
    """Adapt whatever the transfer reports (counts or an object with counts)."""

    def report(*args: Any, **kwargs: Any) -> None:
        value = args[0] if args else kwargs.get("done", kwargs.get("delivered"))
        total = args[1] if len(args) > 1 else kwargs.get("total", kwargs.get("expected"))
        sent: int | None = None
        size: int | None = None
        if value is not None and not isinstance(value, int):  # a TransferProgress
            total = getattr(value, "instances_total", total)
            sent = getattr(value, "bytes_done", None)
            size = getattr(value, "bytes_total", None)
            value = getattr(value, "instances_done", None)
        if isinstance(value, int):
            ctx.progress(
                base + value,
                base + total if isinstance(total, int) else None,
                bytes_done=sent if isinstance(sent, int) else None,
                bytes_total=size if isinstance(size, int) else None,
            )

    return report


def transfer_one(
    ctx: TaskContext,
    source: Node,
    destination: Node,
    study_uid: str,
    series_uids: Sequence[str] | None,
    pseudonym: str | None,
    *,
    progress_base: int = 0,
) -> Any:
    """One call of the transfer layer with the task's pseudonymizer, progress and cancel."""
    ctx.check_cancel()
    if ctx.job.get("has_archive_password") and not ctx.job.get("archive_password"):
        # Never fall back to an unprotected copy.
        raise InputError("the archive password is gone (the job ended); give it again")
    # Transfer-layer choices a job may carry (the CLI's --via, --exclude-modality, …).
    params = ctx.job.get("params") or {}
    choices: dict[str, Any] = {}
    if params.get("via", "auto") != "auto":
        choices["via"] = str(params["via"])
    if params.get("exclude_modalities"):
        choices["exclude_modalities"] = list(params["exclude_modalities"])
    result = _transfer_function()(
        source,
        destination,
        study_uid,
        list(series_uids) if series_uids else None,
        pseudonymizer=build_pseudonymizer(ctx.settings, ctx.job, pseudonym),
        folder_name=str(params.get("folder_name") or job_folder_name(ctx.job)),
        archive_password=_archive_password(ctx),
        **choices,
        nifti=bool(ctx.job.get("convert_to_nifti")),
        progress=_progress_callback(ctx, progress_base),
        cancel=ctx.cancel_event,
    )
    # The jobs chart's instances per modality; a mass-transfer task adds up its studies.
    counts = getattr(result, "modalities", None)
    if isinstance(counts, dict):
        ctx.modalities.update({str(k): int(v) for k, v in counts.items()})
    return result


def _archive_password(ctx: TaskContext) -> str | None:
    """The job's archive password, unsealed here in the worker and nowhere else."""
    from ..store.sealed import unseal

    stored = ctx.job.get("archive_password")
    return unseal(ctx.settings, stored) if stored else None


def job_folder_name(job: dict[str, Any]) -> str:
    """ADIT's job folder in a folder destination: ``adit_<kind>_<id>_<YYYYMMDD>_<owner>``."""
    created = job.get("created")
    day = created.strftime("%Y%m%d") if created is not None else ""
    owner = re.sub(r"[^A-Za-z0-9._-]", "_", str(job.get("owner", "")))
    return f"adit_{job.get('kind', 'job')}_{job.get('id', 0)}_{day}_{owner}"


def outcome_of(result: Any) -> TaskOutcome:
    """A task outcome from a TransferResult (status success/warning/failure, message)."""
    raw = str(getattr(getattr(result, "status", None), "value", getattr(result, "status", "")))
    status = {
        "success": TaskStatus.SUCCESS,
        "warning": TaskStatus.WARNING,
        "failure": TaskStatus.FAILURE,
        "canceled": TaskStatus.CANCELED,
        "cancelled": TaskStatus.CANCELED,
    }.get(raw.lower(), TaskStatus.FAILURE)
    message = str(getattr(result, "message", "") or "")
    delivered = getattr(result, "delivered", None)
    expected = getattr(result, "expected", None)
    if not message and isinstance(delivered, int):
        message = f"{delivered} of {expected} instance(s) delivered"
        skipped = getattr(result, "skipped", 0)
        # A re-run into the same folder delivers nothing: say why, not just "0 of N".
        message += f", {skipped} already there." if isinstance(skipped, int) and skipped else "."
    if status is TaskStatus.SUCCESS and not message:
        message = "Transfer task completed successfully."
    # The accounting line: what this attempt delivered and what an earlier one had.
    counts = " ".join(
        f"{key}={getattr(result, key)}"
        for key in ("expected", "delivered", "skipped", "excluded", "refused", "failed")
        if isinstance(getattr(result, key, None), int)
    )
    return TaskOutcome(status, message or "Transfer task ended.", f"{counts}\n" if counts else "")


def run_transfer_task(ctx: TaskContext) -> TaskOutcome:
    """Selective and batch transfer: one study (or some of its series) source → destination."""
    task = ctx.task
    if not task.get("source") or not task.get("destination") or not task.get("study_uid"):
        raise InputError("task lacks a source, a destination or a study")
    with ExitStack() as stack:
        source = stack.enter_context(closing(open_task_node(ctx, task["source"])))
        destination = stack.enter_context(closing(open_task_node(ctx, task["destination"])))
        result = transfer_one(
            ctx,
            source,
            destination,
            task["study_uid"],
            task.get("series_uids") or None,
            task.get("pseudonym") or None,
        )
    ctx.check_cancel()
    return outcome_of(result)


def run_batch_query_task(ctx: TaskContext) -> TaskOutcome:
    """One batch-query row: find its studies (or series) and store them as result rows."""
    from ..dicom.query import find_series, find_studies

    query: dict[str, Any] = dict(ctx.task.get("query") or {})
    modalities = list(query.get("modalities") or [])
    filters = {k: v for k, v in (query.get("filters") or {}).items() if v}
    if isinstance(filters.get("study_date"), list):
        filters["study_date"] = tuple(filters["study_date"])
    series_description = query.get("series_description") or ""
    series_numbers = list(query.get("series_numbers") or [])
    rows: list[BatchQueryResult] = []
    with closing(open_task_node(ctx, ctx.task["source"])) as source:
        studies = find_studies(source, modality=modalities or None, **filters)
        truncated = studies.truncated
        for study in studies:
            ctx.check_cancel()
            base = _result_row(ctx, study)
            if not series_description and not series_numbers:
                rows.append(base)
                continue
            series = find_series(
                source,
                study_uid=study.study_uid,
                series_description=series_description or None,
                series_number=series_numbers or None,
                modality=modalities or None,
            )
            truncated = truncated or series.truncated
            for item in series:
                row = _result_row(ctx, study)
                row.series_uid = item.series_uid
                row.series_description = item.description[:64]
                row.series_number = "" if item.series_number is None else str(item.series_number)
                row.image_count = item.instance_count
                rows.append(row)
            ctx.progress(len(rows))
    with ctx.database.session() as session:
        # A re-run (retry, reset) replaces what an earlier attempt stored.
        session.execute(delete(BatchQueryResult).where(BatchQueryResult.task_id == ctx.claimed.id))
        session.add_all(rows)
    by_series = bool(series_description or series_numbers)
    what = "series" if by_series else "studies"
    patients = {r.patient_id for r in rows}
    if not rows:
        return TaskOutcome(TaskStatus.WARNING, f"No {what} found.")
    notes = []
    if truncated:
        notes.append("results were truncated by the node's result limit")
    if len(patients) > 1 and not filters.get("patient_id"):
        notes.append("indistinct patients: the name and birth date match several PatientIDs")
    message = f"{len(rows)} {what} found." + (f" Warning: {'; '.join(notes)}." if notes else "")
    return TaskOutcome(TaskStatus.WARNING if notes else TaskStatus.SUCCESS, message)


def _result_row(ctx: TaskContext, study: Any) -> BatchQueryResult:
    return BatchQueryResult(
        job_id=ctx.claimed.job_id,
        task_id=ctx.claimed.id,
        patient_id=study.patient_id,
        patient_name=study.patient_name[:324],
        patient_birth_date=study.birth_date.strftime("%Y%m%d") if study.birth_date else "",
        accession_number=study.accession_number[:64],
        study_date=study.study_date.strftime("%Y%m%d") if study.study_date else "",
        study_time=study.study_time[:16],
        modalities=",".join(study.modalities)[:64],
        image_count=study.instance_count,
        study_description=study.description[:64],
        pseudonym=ctx.task.get("pseudonym") or "",
        study_uid=study.study_uid,
    )


def _mass(ctx: TaskContext) -> TaskOutcome:
    from .mass import run_mass_transfer_task

    return run_mass_transfer_task(ctx)


EXECUTORS: dict[JobKind, Callable[[TaskContext], TaskOutcome]] = {
    JobKind.SELECTIVE_TRANSFER: run_transfer_task,
    JobKind.BATCH_TRANSFER: run_transfer_task,
    JobKind.BATCH_QUERY: run_batch_query_task,
    JobKind.MASS_TRANSFER: _mass,
}
