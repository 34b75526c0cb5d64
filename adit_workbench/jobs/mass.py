"""Mass transfer: every series of a date range that passes the filters, partition by partition.

Filters follow ADIT's schema: a list of filters, each ``{"mode": "include"|"exclude",
"modality", "institution_name", "study_description", "series_description",
"series_number", "min_age", "max_age", "min_number_of_series_related_instances"}``.
A series is kept if it matches any include filter and no exclude filter; include filters
go to the PACS (DICOM wildcards, case-sensitive), exclude filters are applied here,
case-insensitively. At least one include filter is required.

Discovery asks for studies day by day; when the PACS answers with its result cap, the
time window is halved and asked again, down to :data:`~.defaults.MIN_WINDOW_MINUTES`, so
that no study is silently missed. One :class:`~adit_workbench.store.jobs.MassTransferVolume`
row per series records its outcome, so a dead series shows up instead of failing or
hiding its partition.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..dicom.filters import wildcard_match
from ..errors import InputError
from ..store.jobs import MassTransferVolume
from . import defaults
from .claim import write_session
from .execute import build_pseudonymizer, open_task_node, outcome_of, transfer_one
from .runner import Canceled, TaskContext, TaskOutcome
from .status import TaskStatus

__all__ = ["FILTER_KEYS", "discover", "parse_filters", "partitions", "run_mass_transfer_task"]

FILTER_KEYS = frozenset(
    {
        "mode",
        "modality",
        "institution_name",
        "apply_institution_on_study",
        "study_description",
        "series_description",
        "series_number",
        "min_age",
        "max_age",
        "min_number_of_series_related_instances",
    }
)


def parse_filters(value: Any) -> list[dict[str, Any]]:
    """Filters from a list, a JSON string or a JSON file; raises InputError naming the fault."""
    if isinstance(value, Path) or (isinstance(value, str) and not value.lstrip().startswith("[")):
        path = Path(value)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read filters file {path.name}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise InputError(
                f"filters file {path.name}: invalid JSON at line {exc.lineno}"
            ) from None
    elif isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputError(f"filters: invalid JSON at line {exc.lineno}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(f, dict) for f in value):
        raise InputError("filters are a list of objects")
    result: list[dict[str, Any]] = []
    for index, item in enumerate(value, start=1):
        unknown = sorted(set(item) - FILTER_KEYS)
        if unknown:
            raise InputError(f"filter {index}: unknown keys {unknown}")
        mode = str(item.get("mode", "include")).lower()
        if mode not in ("include", "exclude"):
            raise InputError(f"filter {index}: mode is include or exclude")
        for key in ("min_age", "max_age", "min_number_of_series_related_instances"):
            if item.get(key) is not None and (not isinstance(item[key], int) or item[key] < 0):
                raise InputError(f"filter {index}: {key} is a non-negative integer")
        if item.get("series_number") is not None and not str(item["series_number"]).isdigit():
            raise InputError(f"filter {index}: series_number is an integer")
        result.append({**item, "mode": mode})
    if not any(f["mode"] == "include" for f in result):
        raise InputError("filters need at least one include filter")
    return result


def partitions(start: date, end: date, granularity: str) -> list[tuple[date, date, str]]:
    """(first day, last day, key) per partition; keys are YYYYMMDD or YYYYMMDD-YYYYMMDD."""
    step = {"daily": 1, "weekly": 7}.get(granularity.lower())
    if step is None:
        raise InputError("granularity is daily or weekly")
    parts = []
    day = start
    while day <= end:
        last = min(day + timedelta(days=step - 1), end)
        key = f"{day:%Y%m%d}" if step == 1 else f"{day:%Y%m%d}-{last:%Y%m%d}"
        parts.append((day, last, key))
        day = last + timedelta(days=1)
    return parts


def _windowed_studies(
    ctx: TaskContext, source: Any, day: date, start: int, end: int, query: dict[str, Any]
) -> Iterator[Any]:
    """Studies of ``day`` between minute ``start`` and ``end``; halves the window when capped."""
    from ..dicom.query import find_studies

    ctx.check_cancel()
    time_range = f"{start // 60:02d}{start % 60:02d}00-{(end - 1) // 60:02d}{(end - 1) % 60:02d}59"
    whole_day = start == 0 and end == 24 * 60
    studies = find_studies(
        source, study_date=day, study_time=None if whole_day else time_range, **query
    )
    if studies.truncated and end - start > defaults.MIN_WINDOW_MINUTES:
        middle = (start + end) // 2
        yield from _windowed_studies(ctx, source, day, start, middle, query)
        yield from _windowed_studies(ctx, source, day, middle, end, query)
        return
    if studies.truncated:
        ctx.notes.append(
            f"{day:%Y-%m-%d}: more studies than the node returns in a "
            f"{defaults.MIN_WINDOW_MINUTES}-minute window; some may be missing"
        )
    yield from studies


def _age(study: Any) -> int | None:
    if study.birth_date is None or study.study_date is None:
        return None
    born, day = study.birth_date, study.study_date
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _excluded(series: Any, study: Any, rule: dict[str, Any]) -> bool:
    """Whether an exclude filter matches (case-insensitive; all its keys must match)."""
    checks = {
        "modality": series.modality,
        "study_description": study.description,
        "series_description": series.description,
        "institution_name": str(series.identifier.get("InstitutionName", "") or ""),
    }
    matched = False
    for key, text in checks.items():
        if rule.get(key):
            if not wildcard_match(str(rule[key]).upper(), text.upper()):
                return False
            matched = True
    if rule.get("series_number") is not None:
        if str(series.series_number) != str(rule["series_number"]):
            return False
        matched = True
    return matched


def _kept(series: Any, study: Any, rule: dict[str, Any]) -> bool:
    """Include-filter checks the PACS may not have applied (ages, instance counts)."""
    age = _age(study)
    if rule.get("min_age") is not None and (age is None or age < rule["min_age"]):
        return False
    if rule.get("max_age") is not None and (age is None or age > rule["max_age"]):
        return False
    least = rule.get("min_number_of_series_related_instances")
    return not (least is not None and (series.instance_count or 0) < least)


def discover(ctx: TaskContext, source: Any, first: date, last: date) -> list[tuple[Any, Any]]:
    """(study, series) pairs of the partition that pass the job's filters."""
    from ..dicom.query import find_series

    rules = ctx.job["params"]["filters"]
    includes = [r for r in rules if r["mode"] == "include"]
    excludes = [r for r in rules if r["mode"] == "exclude"]
    found: dict[str, tuple[Any, Any]] = {}
    day = first
    while day <= last:
        for rule in includes:
            study_query: dict[str, Any] = {}
            if rule.get("study_description"):
                study_query["study_description"] = rule["study_description"]
            if rule.get("modality"):
                study_query["modality"] = rule["modality"]
            for study in _windowed_studies(ctx, source, day, 0, 24 * 60, study_query):
                series_query: dict[str, Any] = {"study_uid": study.study_uid}
                for key in ("modality", "series_description", "series_number"):
                    if rule.get(key) not in (None, ""):
                        series_query[key] = rule[key]
                if rule.get("institution_name"):
                    series_query["InstitutionName"] = rule["institution_name"]
                found_series = find_series(source, **series_query)
                if found_series.truncated:
                    ctx.notes.append("a study has more series than the node's result limit")
                for series in found_series:
                    if series.series_uid in found or not _kept(series, study, rule):
                        continue
                    if any(_excluded(series, study, ex) for ex in excludes):
                        continue
                    found[series.series_uid] = (study, series)
        day += timedelta(days=1)
    return list(found.values())


def run_mass_transfer_task(ctx: TaskContext) -> TaskOutcome:
    """One partition: discover its series, record them, transfer them study by study."""
    query = ctx.task["query"]
    first = date.fromisoformat(query["partition_start"])
    last = date.fromisoformat(query["partition_end"])
    with (
        closing(open_task_node(ctx, ctx.task["source"])) as source,
        closing(open_task_node(ctx, ctx.task["destination"])) as destination,
    ):
        pairs = discover(ctx, source, first, last)
        volumes = _record(ctx, query["key"], pairs)
        by_study: dict[str, list[MassTransferVolume]] = defaultdict(list)
        for volume in volumes:
            if volume.status != "exported":
                by_study[volume.study_uid].append(volume)
        ctx.progress(0, len(by_study))
        for index, (study_uid, group) in enumerate(by_study.items()):
            ctx.check_cancel()
            try:
                result = transfer_one(
                    ctx, source, destination, study_uid, [v.series_uid for v in group], None
                )
                outcome = outcome_of(result)
            except (Canceled, InputError):
                raise
            except Exception as exc:  # one dead study must not sink the partition
                outcome = TaskOutcome(TaskStatus.FAILURE, str(exc) or type(exc).__name__)
            state = "error" if outcome.status is TaskStatus.FAILURE else "exported"
            _update(ctx, [v.id for v in group], state, outcome.message)
            ctx.progress(index + 1, len(by_study))
    with ctx.database.session() as session:
        states = list(
            session.scalars(
                select(MassTransferVolume.status).where(
                    MassTransferVolume.task_id == ctx.claimed.id
                )
            )
        )
    errors = states.count("error")
    if not states:
        return TaskOutcome(TaskStatus.SUCCESS, f"Partition {query['key']}: no matching series.")
    text = f"Partition {query['key']}: {len(states) - errors} of {len(states)} series exported."
    if ctx.notes:
        text += " Warning: " + "; ".join(ctx.notes)
    if errors == len(states):
        return TaskOutcome(TaskStatus.FAILURE, text)
    return TaskOutcome(TaskStatus.WARNING if errors or ctx.notes else TaskStatus.SUCCESS, text)


def _record(ctx: TaskContext, key: str, pairs: list[tuple[Any, Any]]) -> list[MassTransferVolume]:
    """One row per series (kept from an earlier attempt when it exists)."""
    job_id = ctx.claimed.job_id
    with write_session(ctx.database) as session:
        existing = {
            v.series_uid: v
            for v in session.scalars(
                select(MassTransferVolume).where(MassTransferVolume.job_id == job_id)
            )
        }
        rows = []
        for study, series in pairs:
            row = existing.get(series.series_uid)
            if row is None:
                pseudo = build_pseudonymizer(ctx.settings, ctx.job, None)
                when = f"{study.study_date:%Y%m%d}" if study.study_date else ""
                row = MassTransferVolume(
                    job_id=job_id,
                    task_id=ctx.claimed.id,
                    partition_key=key,
                    pseudonym=pseudo.pseudonym(study.patient_id) if pseudo else "",
                    patient_id=study.patient_id,
                    accession_number=study.accession_number[:64],
                    study_uid=study.study_uid,
                    study_uid_pseudonymized=pseudo.uid(study.study_uid) if pseudo else "",
                    series_uid=series.series_uid,
                    series_uid_pseudonymized=pseudo.uid(series.series_uid) if pseudo else "",
                    modality=series.modality[:16],
                    study_description=study.description[:64],
                    series_description=series.description[:64],
                    series_number="" if series.series_number is None else str(series.series_number),
                    study_datetime=(when + (f" {study.study_time}" if study.study_time else "")),
                    institution_name=str(series.identifier.get("InstitutionName", "") or "")[:64],
                    number_of_images=series.instance_count,
                )
                session.add(row)
            rows.append(row)
        session.flush()
        return rows


def _update(ctx: TaskContext, ids: list[int], status: str, message: str) -> None:
    from sqlalchemy import update

    with ctx.database.session() as session:
        session.execute(
            update(MassTransferVolume)
            .where(MassTransferVolume.id.in_(ids))
            .values(status=status, log=message[:2000])
            .execution_options(synchronize_session=False)
        )
