"""Routes for jobs: create the four kinds, list, show, progress, tasks, actions, results.

Creation calls the facade (``wb.transfer``, ``wb.batch_query`` …), so the job rows, the
checks and the pseudonymization settings are those of a notebook call. Batch files are
uploaded as ``multipart/form-data`` (field ``file``, and ``params`` holding JSON); an
invalid file is answered 422 with every row error at once (``rows``) and nothing queued.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask

from ..errors import InputError
from ..jobs.handle import JobHandle
from .app import Caller, caller
from .errors import validation_message
from .models import ActionRequest, BatchParams, MassTransferRequest, TransferRequest

__all__ = ["describe_job", "router"]

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=2**62)]
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\- ]{0,120}\.(csv|xlsx)$", re.IGNORECASE)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(value.value, str):  # str enums
        return value.value
    return value


def _progress(handle: JobHandle) -> dict[str, Any]:
    p = handle.progress
    return {
        "status": p.status.value,
        "total": p.total,
        "finished": p.finished,
        "counts": p.counts,
        "items_done": p.items_done,
        "items_total": p.items_total,
        "bytes_done": p.bytes_done,
        "bytes_total": p.bytes_total,
        "retries": p.retries,
        "failures": p.failures,
    }


def describe_job(handle: JobHandle) -> dict[str, Any]:
    """A job's summary with its progress."""
    summary = {k: _jsonable(v) for k, v in handle.summary().items()}
    return {**summary, "progress": _progress(handle)}


# -- creating ---------------------------------------------------------------------------
@router.post("/transfer", status_code=201)
def create_transfer(body: TransferRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
    """A selective transfer of studies (or single series)."""
    studies = [s if isinstance(s, str) else s.model_dump() for s in body.studies]
    handle = who.wb.transfer(
        studies, to=body.to, source=body.source, pseudonym=body.pseudonym, **body.options()
    )
    return describe_job(handle)


def _params(raw: str) -> BatchParams:
    try:
        return BatchParams.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError(validation_message(exc.errors())[1]) from None


def _upload(file: UploadFile) -> tuple[bytes, str]:
    name = file.filename or ""
    if not _FILE_NAME.fullmatch(name):
        raise InputError(
            "the batch file needs a plain name ending .csv or .xlsx (letters, digits, "
            "'_', '-', '.', no folders)"
        )
    return file.file.read(), name


@router.post("/batch_query", status_code=201)
def create_batch_query(
    file: Annotated[UploadFile, File()],
    params: Annotated[str, Form(max_length=10_000)],
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """A batch query from an uploaded .csv/.xlsx file."""
    p = _params(params)
    if p.to is not None:
        raise InputError("a batch query has no destination ('to')")
    data, name = _upload(file)
    handle = who.wb.batch_query(data, source=p.source, name=name, **p.options())
    return describe_job(handle)


@router.post("/batch_transfer", status_code=201)
def create_batch_transfer(
    file: Annotated[UploadFile, File()],
    params: Annotated[str, Form(max_length=10_000)],
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """A batch transfer from an uploaded .csv/.xlsx file."""
    p = _params(params)
    if p.to is None:
        raise InputError("a batch transfer needs a destination ('to')")
    data, name = _upload(file)
    handle = who.wb.batch_transfer(data, source=p.source, to=p.to, name=name, **p.options())
    return describe_job(handle)


@router.post("/mass_transfer", status_code=201)
def create_mass_transfer(
    body: MassTransferRequest, who: Caller = Depends(caller)
) -> dict[str, Any]:
    """Every series in a date range matching the filters (a list, or JSON text of one)."""
    filters: Any = body.filters
    if isinstance(filters, str):
        # The facade reads a string that is not JSON as a file name: never on the service.
        try:
            filters = json.loads(filters)
        except json.JSONDecodeError as exc:
            raise InputError(f"filters: invalid JSON at line {exc.lineno}") from None
        if not isinstance(filters, list | dict):
            raise InputError("filters are a list of objects")
    handle = who.wb.mass_transfer(
        source=body.source, to=body.to, start=body.start, end=body.end,
        filters=filters, granularity=body.granularity, **body.options(),
    )  # fmt: skip
    return describe_job(handle)


# -- reading ----------------------------------------------------------------------------
@router.get("")
def list_jobs(
    who: Caller = Depends(caller),
    all_users: bool = False,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The caller's jobs, newest first (staff: everyone's with ``all_users``)."""
    return [
        describe_job(j) for j in who.wb.jobs.list(status=status, all_users=all_users, limit=limit)
    ]


@router.get("/modalities")
def jobs_modalities(
    who: Caller = Depends(caller),
    ids: Annotated[list[int], Query(max_length=1000)] = [],  # noqa: B006 (FastAPI copies it)
) -> dict[str, dict[str, int]]:
    """Instances per modality that each job's transfer tasks delivered (the jobs chart)."""
    return {str(k): v for k, v in who.wb.jobs.instances_per_modality(ids).items()}


@router.get("/{job_id}")
def show_job(job_id: JobId, who: Caller = Depends(caller)) -> dict[str, Any]:
    """One job (owner or staff)."""
    return describe_job(who.wb.jobs.get(job_id))


@router.get("/{job_id}/progress")
def job_progress(job_id: JobId, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Tasks per status and items done, as of now (what ``wait()`` polls)."""
    handle = who.wb.jobs.get(job_id)
    return {**_progress(handle), "message": handle.message}


@router.get("/{job_id}/tasks")
def job_tasks(job_id: JobId, who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    """One record per task (no patient data)."""
    frame = who.wb.jobs.get(job_id).tasks
    return [{str(k): _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


@router.get("/{job_id}/leak-scan")
def job_leak_scan(
    job_id: JobId,
    ignore: Annotated[list[str] | None, Query(max_length=12)] = None,
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """Scan a finished pseudonymized transfer's delivered files for identifying values of
    the originals (owner or staff; run here, where the files and the source are). The
    answer is the scanner's report: file paths below the destination, values masked."""
    report = who.wb.jobs.get(job_id).leak_scan(ignore=ignore)
    return {
        "clean": report.clean,
        "summary": report.summary(),
        "files_scanned": report.files_scanned,
        "values_collected": report.values_collected,
        "leaks": [asdict(leak) for leak in report.leaks],
        "unreadable": list(report.unreadable),
    }


def _clean(value: Any) -> Any:
    import pandas as pd

    if value is None or (not isinstance(value, str | list) and pd.isna(value)):
        return None
    if hasattr(value, "item") and not hasattr(value, "isoformat"):
        return value.item()
    return _jsonable(value)


@router.get("/{job_id}/results", response_model=None)
def job_results(
    job_id: JobId,
    who: Caller = Depends(caller),
    format: Literal["json", "csv", "xlsx"] = "json",
) -> dict[str, Any] | Response:
    """The result table (batch query, mass transfer) as JSON records or a file."""
    handle = who.wb.jobs.get(job_id)
    results = handle.results
    if format == "json":
        frame = results.df
        return {
            "columns": [str(c) for c in frame.columns],
            "rows": [
                {str(k): _clean(v) for k, v in row.items()} for row in frame.to_dict("records")
            ],
        }
    folder = tempfile.mkdtemp(prefix="adit-wb-export-")
    target = FilePath(folder) / f"job-{job_id}.{format}"
    handle.export(target)

    def cleanup() -> None:
        target.unlink(missing_ok=True)
        FilePath(folder).rmdir()

    return FileResponse(target, filename=target.name, background=BackgroundTask(cleanup))


# -- actions ----------------------------------------------------------------------------
_ACTIONS = Literal["cancel", "resume", "retry", "restart", "verify", "urgent", "requeue"]


@router.post("/{job_id}/{action}")
def job_action(
    job_id: JobId,
    action: _ACTIONS,
    body: ActionRequest | None = None,
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """cancel, resume, retry, restart (staff), verify (staff), urgent or requeue."""
    jobs = who.wb.jobs
    password = body.archive_password if body is not None else None
    count: int | None = None
    if action in ("resume", "retry", "restart"):
        count = getattr(jobs, action)(job_id, archive_password=password)
    elif action == "urgent":
        jobs.make_urgent(job_id)
    elif action == "requeue":
        count = jobs.requeue(job_id)
    else:
        getattr(jobs, action)(job_id)
    return {**describe_job(jobs.get(job_id)), "tasks_reset": count}


@router.post("/tasks/{task_id}/reset")
def reset_task(
    task_id: Annotated[int, Path(ge=1, le=2**62)],
    body: ActionRequest | None = None,
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """Run one finished task again."""
    password = body.archive_password if body is not None else None
    who.wb.jobs.reset_task(task_id, archive_password=password)
    return {"task": task_id, "reset": True}


@router.delete("/{job_id}", status_code=204)
def delete_job(job_id: JobId, who: Caller = Depends(caller)) -> Response:
    """Delete a job that has not started or has finished."""
    who.wb.jobs.delete(job_id)
    return Response(status_code=204)
