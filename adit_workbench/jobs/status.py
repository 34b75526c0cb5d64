"""Job kinds, statuses and the rule that derives a job's status from its tasks.

The rule is ADIT's (``DicomJob.post_process``), with one change: a job whose tasks are
partly done and partly pending is IN_PROGRESS, not PENDING, so that a notebook shows it
moving.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from ..errors import InputError

__all__ = [
    "FINAL_JOB_STATUSES",
    "FINAL_TASK_STATUSES",
    "JobKind",
    "JobStatus",
    "TaskStatus",
    "derive_job_status",
    "priority",
]


class JobKind(StrEnum):
    """What a job does."""

    SELECTIVE_TRANSFER = "selective_transfer"
    BATCH_QUERY = "batch_query"
    BATCH_TRANSFER = "batch_transfer"
    MASS_TRANSFER = "mass_transfer"

    @classmethod
    def parse(cls, value: str | JobKind) -> JobKind:
        """A kind from its value (``-`` or ``_``, any case)."""
        try:
            return cls(str(value).strip().lower().replace("-", "_"))
        except ValueError:
            valid = ", ".join(k.value for k in cls)
            raise InputError(f"unknown job kind {value!r}; valid: {valid}") from None

    @property
    def is_transfer(self) -> bool:
        """Whether the job's tasks move studies (everything but batch query)."""
        return self is not JobKind.BATCH_QUERY


class JobStatus(StrEnum):
    """Where a job stands; derived from its tasks except for UNVERIFIED and CANCELING."""

    UNVERIFIED = "UNVERIFIED"
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILURE = "FAILURE"

    @classmethod
    def parse(cls, value: str | JobStatus) -> JobStatus:
        """A status from its value (any case)."""
        try:
            return cls(str(value).strip().upper().replace("-", "_"))
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise InputError(f"unknown job status {value!r}; valid: {valid}") from None


class TaskStatus(StrEnum):
    """Where one task stands."""

    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    CANCELED = "CANCELED"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILURE = "FAILURE"


FINAL_TASK_STATUSES = frozenset(
    {TaskStatus.CANCELED, TaskStatus.SUCCESS, TaskStatus.WARNING, TaskStatus.FAILURE}
)
FINAL_JOB_STATUSES = frozenset(
    {JobStatus.CANCELED, JobStatus.SUCCESS, JobStatus.WARNING, JobStatus.FAILURE}
)

#: Queue priority (higher runs first) per kind: (normal, urgent), as in ADIT.
PRIORITIES: dict[JobKind, tuple[int, int]] = {
    JobKind.SELECTIVE_TRANSFER: (4, 8),
    JobKind.BATCH_QUERY: (3, 7),
    JobKind.BATCH_TRANSFER: (2, 6),
    JobKind.MASS_TRANSFER: (1, 5),
}


def priority(kind: JobKind | str, urgent: bool) -> int:
    """The queue priority of a task of a job of ``kind``."""
    normal, high = PRIORITIES[JobKind.parse(kind)]
    return high if urgent else normal


def derive_job_status(
    current: JobStatus | str, tasks: Iterable[TaskStatus | str]
) -> tuple[JobStatus, str]:
    """The job status and message that follow from its tasks' statuses.

    ``current`` matters for UNVERIFIED (stays until verified) and CANCELING (ends as
    CANCELED once no task runs any more).
    """
    now = JobStatus(current)
    counts = Counter(TaskStatus(t) for t in tasks)
    if now is JobStatus.UNVERIFIED:
        return now, "Waiting for verification by staff."
    running = counts[TaskStatus.IN_PROGRESS]
    pending = counts[TaskStatus.PENDING]
    if now is JobStatus.CANCELING:
        if running:
            return now, f"Canceling: {running} task(s) still stopping."
        return JobStatus.CANCELED, _summary(counts) or "Job canceled."
    total = sum(counts.values())
    if not total:
        return JobStatus.SUCCESS, "No tasks to process."
    if running or (pending and pending < total):
        finished = total - running - pending
        return JobStatus.IN_PROGRESS, f"{finished} of {total} task(s) finished."
    if pending:
        return JobStatus.PENDING, f"{total} task(s) waiting."
    succeeded = counts[TaskStatus.SUCCESS]
    warned = counts[TaskStatus.WARNING]
    failed = counts[TaskStatus.FAILURE]
    summary = _summary(counts)
    if failed:
        head = "All tasks failed." if failed == total else "Some tasks failed."
        return JobStatus.FAILURE, f"{head} {summary}"
    if warned:
        head = "All tasks have warnings." if warned == total else "Some tasks have warnings."
        return JobStatus.WARNING, f"{head} {summary}"
    if succeeded:
        head = "All tasks succeeded." if succeeded == total else "Some tasks were canceled."
        return JobStatus.SUCCESS, f"{head} {summary}"
    return JobStatus.CANCELED, f"All tasks were canceled. {summary}"


def _summary(counts: Counter[TaskStatus]) -> str:
    parts = [
        f"{counts[s]} {s.value.lower().replace('_', ' ')}"
        for s in (TaskStatus.SUCCESS, TaskStatus.WARNING, TaskStatus.FAILURE, TaskStatus.CANCELED)
        if counts[s]
    ]
    return f"({', '.join(parts)})" if parts else ""
