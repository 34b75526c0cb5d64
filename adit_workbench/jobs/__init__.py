"""Jobs: selective transfer, batch query, batch transfer and mass transfer in the background.

A request becomes a job with tasks in the database; tasks wait in a queue (RQ on Redis,
or an inline thread pool without Redis); a worker claims a task in the database, checks
the owner's rights again, heartbeats while it runs and records the outcome; the job's
status follows from its tasks. A sweeper re-queues the tasks of workers that died::

    job = wb.batch_query("queries.xlsx", source="PACS")
    job.wait()                       # progress bar; raises JobFailed with the reason
    job.results.df                   # found studies, failed rows included
    job.results.to_excel("out.xlsx") # usable directly as a batch-transfer file
    wb.jobs.list()                   # this user's jobs
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .batchfile import BatchFileError, RowError
    from .handle import JobHandle
    from .progress import JobFailed, NoRunner, Progress
    from .queue import InlineBackend, QueueBackend, RQBackend
    from .rules import (
        BATCH_QUERY_COLUMNS,
        BATCH_TRANSFER_COLUMNS,
        parse_batch_query,
        parse_batch_transfer,
    )
    from .service import JobManager
    from .status import JobKind, JobStatus, TaskStatus, derive_job_status

__all__ = [
    "BATCH_QUERY_COLUMNS",
    "BATCH_TRANSFER_COLUMNS",
    "BatchFileError",
    "InlineBackend",
    "JobFailed",
    "JobHandle",
    "JobKind",
    "JobManager",
    "JobStatus",
    "NoRunner",
    "Progress",
    "QueueBackend",
    "RQBackend",
    "RowError",
    "TaskStatus",
    "derive_job_status",
    "parse_batch_query",
    "parse_batch_transfer",
]

#: Where each public name lives, imported on first use (PEP 562): a widget asking for
#: ``JobStatus`` or the remote client raising ``JobFailed`` must not pull in SQLAlchemy
#: and the store through ``handle`` and ``service``, nor pydicom through ``batchfile``.
_WHERE = {
    "BATCH_QUERY_COLUMNS": ".rules",
    "BATCH_TRANSFER_COLUMNS": ".rules",
    "BatchFileError": ".batchfile",
    "InlineBackend": ".queue",
    "JobFailed": ".progress",
    "JobHandle": ".handle",
    "JobKind": ".status",
    "JobManager": ".service",
    "JobStatus": ".status",
    "NoRunner": ".progress",
    "Progress": ".progress",
    "QueueBackend": ".queue",
    "RQBackend": ".queue",
    "RowError": ".batchfile",
    "TaskStatus": ".status",
    "derive_job_status": ".status",
    "parse_batch_query": ".rules",
    "parse_batch_transfer": ".rules",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
