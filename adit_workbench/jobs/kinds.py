"""The four job kinds: turn a request (studies, a batch file, a date range) into tasks.

Each function checks its rules through the manager's access (see
:meth:`~.service.JobManager.check_common`), validates all of its input before anything
is stored, and returns the :class:`~.handle.JobHandle` of the queued job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import date
from typing import TYPE_CHECKING, Any

from ..access import Permission
from ..deid import Option
from ..dicom.filters import parse_period
from ..errors import InputError
from ..store.jobs import Job, Task
from . import defaults
from .frames import frame_as_batch, frame_study_refs, is_frame
from .preflight import check_nodes, check_studies
from .rules import parse_batch_query, parse_batch_transfer
from .status import JobKind

if TYPE_CHECKING:
    from .handle import JobHandle
    from .service import JobManager

__all__ = ["batch_query", "batch_transfer", "mass_transfer", "selective_transfer"]

#: A batch file (path, bytes, stream) or a DataFrame with the batch file's columns.
BatchSource = Any


def _options(options: Iterable[str | Option] | None) -> list[str]:
    names: list[str] = []
    for option in options or ():
        parsed = Option.parse(option) if isinstance(option, str) else option
        for member in parsed:
            if member.name and member.name not in names and member is not Option.BASIC:
                names.append(member.name)
    return names


def _check_lo(name: str, value: str) -> str:
    if len(value) > 64 or "\\" in value or not value.isprintable():
        raise InputError(f"{name} must be at most 64 printable characters without backslash")
    return value


def _job(
    source: str | None,
    destination: str | None,
    *,
    urgent: bool = False,
    project_name: str = "",
    project_description: str = "",
    ethics_approval_id: str = "",
    trial_protocol_id: str = "",
    trial_protocol_name: str = "",
    pseudonymize: bool = True,
    deid_options: Iterable[str | Option] | None = None,
    archive_password: str | None = None,
    convert_to_nifti: bool = False,
    send_finished_mail: bool = False,
    params: Mapping[str, Any] | None = None,
) -> Job:
    if len(project_name) > 150 or len(ethics_approval_id) > 100:
        raise InputError("project_name is at most 150, ethics_approval_id 100 characters")
    return Job(
        source=source,
        destination=destination,
        urgent=urgent,
        project_name=project_name,
        project_description=project_description,
        ethics_approval_id=ethics_approval_id,
        trial_protocol_id=_check_lo("trial_protocol_id", trial_protocol_id),
        trial_protocol_name=_check_lo("trial_protocol_name", trial_protocol_name),
        pseudonymize=pseudonymize,
        deid_options=_options(deid_options),
        archive_password=archive_password or None,
        convert_to_nifti=convert_to_nifti,
        send_finished_mail=send_finished_mail,
        params=dict(params or {}),
    )


def _study_refs(studies: Any) -> list[tuple[str, str, list[str]]]:
    """(patient ID, study UID, series UIDs) from results, UIDs, tuples, dicts or a
    DataFrame with a StudyInstanceUID column (e.g. a filtered ``Results.df``)."""
    if is_frame(studies):
        studies = frame_study_refs(studies)
    if isinstance(studies, (str, Mapping)) or hasattr(studies, "study_uid"):
        studies = [studies]
    merged: dict[str, tuple[str, list[str], bool]] = {}
    for item in studies:
        series: str | None = None
        if hasattr(item, "series_uid"):  # a Series result
            pid = getattr(item, "patient_id", "") or ""
            uid, series = item.study_uid, item.series_uid
        elif hasattr(item, "study_uid"):
            pid, uid = getattr(item, "patient_id", "") or "", item.study_uid
        elif isinstance(item, str):
            pid, uid = "", item
        elif isinstance(item, Mapping):
            pid = str(item.get("patient_id") or item.get("PatientID") or "")
            uid = str(item.get("study_uid") or item.get("StudyInstanceUID") or "")
            series = item.get("series_uid") or item.get("SeriesInstanceUID")
        elif isinstance(item, tuple) and len(item) in (2, 3):
            pid, uid = str(item[0]), str(item[1])
            series = item[2] if len(item) == 3 else None
        else:
            raise InputError(f"cannot transfer a {type(item).__name__}: give studies or series")
        if not uid:
            raise InputError("a study to transfer has no StudyInstanceUID")
        old_pid, old_series, whole = merged.get(uid, (pid, [], False))
        if series and series not in old_series:
            old_series.append(str(series))
        merged[uid] = (old_pid or pid, old_series, whole or not series)
    return [(pid, uid, [] if whole else s) for uid, (pid, s, whole) in merged.items()]


def selective_transfer(
    jobs: JobManager,
    studies: Any,
    *,
    source: str,
    destination: str,
    pseudonym: str | None = None,
    pseudonymize: bool = True,
    urgent: bool = False,
    **options: Any,
) -> JobHandle:
    """Transfer chosen studies or series (results of a query, UIDs, or dicts).

    At most :data:`~.defaults.MAX_SELECTIVE_STUDIES` studies without the staff permission.
    Without a pseudonym, pseudonyms are derived from the project key per patient.
    """
    kind = JobKind.SELECTIVE_TRANSFER
    jobs.check_common(
        kind, source=source, destination=destination, urgent=urgent, pseudonymize=pseudonymize
    )
    refs = _study_refs(studies)
    if not refs:
        raise InputError("no studies given")
    if len(refs) > defaults.MAX_SELECTIVE_STUDIES:
        jobs.access.require(
            Permission.STAFF, action=f"job.create.{kind.value}", details={"studies": len(refs)}
        )
    pseudonym = _check_lo("pseudonym", pseudonym or "")
    job = _job(source, destination, urgent=urgent, pseudonymize=pseudonymize, **options)
    _preflight(jobs, kind, source, destination, [uid for _, uid, _ in refs])
    tasks = [
        Task(
            source=source,
            destination=destination,
            patient_id=pid,
            study_uid=uid,
            series_uids=series,
            pseudonym=pseudonym,
        )
        for pid, uid, series in refs
    ]
    return jobs.submit(kind, job, tasks, verified=_auto_verified(jobs))


def _preflight(
    jobs: JobManager,
    kind: JobKind,
    source: str,
    destination: str,
    study_uids: list[str],
    *,
    where: dict[str, str] | None = None,
) -> None:
    """Nodes fit for the job, studies present on the source: refused before queueing."""
    check_nodes(jobs.database, kind, source=source, destination=destination)
    if defaults.CHECK_STUDIES_AT_SUBMIT:
        check_studies(jobs.database, jobs.settings, source, study_uids, where=where)


def _auto_verified(jobs: JobManager) -> bool:
    """Whether a new job goes straight to the queue (else it waits for staff)."""
    if not defaults.REQUIRE_VERIFICATION:
        return True
    return jobs.access.has(Permission.STAFF)


def batch_query(
    jobs: JobManager,
    file: BatchSource,
    *,
    source: str,
    name: str | None = None,
    urgent: bool = False,
    **options: Any,
) -> JobHandle:
    """Query ``source`` for every row of a batch file (ADIT's columns and rules)."""
    kind = JobKind.BATCH_QUERY
    jobs.check_common(kind, source=source, urgent=urgent)
    if is_frame(file):
        file, name = frame_as_batch(file, "query")
    check_nodes(jobs.database, kind, source=source, destination=None)
    items = parse_batch_query(file, name=name, max_rows=jobs.row_limit(kind))
    job = _job(source, None, urgent=urgent, **options)
    tasks = []
    for item in items:
        query = asdict(item)
        query["filters"] = item.filters()
        tasks.append(
            Task(
                source=source,
                patient_id=item.patient_id,
                pseudonym=item.pseudonym,
                lines=list(item.lines),
                query=query,
            )
        )
    return jobs.submit(kind, job, tasks, verified=_auto_verified(jobs))


def batch_transfer(
    jobs: JobManager,
    file: BatchSource,
    *,
    source: str,
    destination: str,
    name: str | None = None,
    pseudonymize: bool = True,
    urgent: bool = False,
    **options: Any,
) -> JobHandle:
    """Transfer the studies of a batch file; rows of one study become one task."""
    kind = JobKind.BATCH_TRANSFER
    jobs.check_common(
        kind, source=source, destination=destination, urgent=urgent, pseudonymize=pseudonymize
    )
    required = not jobs.access.has(Permission.TRANSFER_UNPSEUDONYMIZED)
    if is_frame(file):
        file, name = frame_as_batch(file, "transfer")
    check_nodes(jobs.database, kind, source=source, destination=destination)
    items = parse_batch_transfer(
        file, name=name, max_rows=jobs.row_limit(kind), pseudonym_required=required
    )
    job = _job(source, destination, urgent=urgent, pseudonymize=pseudonymize, **options)
    where = {i.study_uid: f"line {','.join(map(str, i.lines))}" for i in items}
    _preflight(jobs, kind, source, destination, [i.study_uid for i in items], where=where)
    tasks = [
        Task(
            source=source,
            destination=destination,
            patient_id=i.patient_id,
            study_uid=i.study_uid,
            series_uids=list(i.series_uids),
            pseudonym=i.pseudonym,
            lines=list(i.lines),
        )
        for i in items
    ]
    return jobs.submit(kind, job, tasks, verified=_auto_verified(jobs))


def mass_transfer(
    jobs: JobManager,
    *,
    source: str,
    destination: str,
    start: date | str,
    end: date | str,
    filters: Any,
    granularity: str = "daily",
    pseudonymize: bool = True,
    **options: Any,
) -> JobHandle:
    """Every series in ``start``–``end`` matching ``filters``, one task per day or week."""
    from .mass import parse_filters, partitions

    kind = JobKind.MASS_TRANSFER
    if options.pop("urgent", False):
        raise InputError("mass transfers run at the lowest priority; they cannot be urgent")
    jobs.check_common(kind, source=source, destination=destination, pseudonymize=pseudonymize)
    check_nodes(jobs.database, kind, source=source, destination=destination)
    # One grammar: start="2020", end="2020" is the whole year.
    first = parse_period(start, "start")[0]
    last = parse_period(end, "end")[1]
    if last < first:
        raise InputError("end is before start")
    spec = parse_filters(filters)
    parts = partitions(first, last, granularity)
    params = {
        "start": first.isoformat(),
        "end": last.isoformat(),
        "granularity": granularity,
        "filters": spec,
    }
    job = _job(
        source, destination, urgent=False, pseudonymize=pseudonymize, params=params, **options
    )
    tasks = [
        Task(
            source=source,
            destination=destination,
            query={"partition_start": a.isoformat(), "partition_end": b.isoformat(), "key": key},
        )
        for a, b, key in parts
    ]
    return jobs.submit(kind, job, tasks, verified=_auto_verified(jobs))
