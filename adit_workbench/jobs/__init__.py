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

from .batchfile import BatchFileError, RowError
from .handle import JobFailed, JobHandle, NoRunner, Progress
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
