"""Defaults of the jobs layer, gathered in one module (as rq does).

Each constant is a candidate setting; until :mod:`adit_workbench.config` grows the field,
callers read it from here and tests override it per call.
"""

from __future__ import annotations

#: Seconds between a running task's heartbeats (and its checks for a cancel request).
HEARTBEAT_INTERVAL = 5.0
#: A running task whose heartbeat is older than this is presumed dead and re-queued.
STALE_AFTER = 60.0
#: Seconds between two sweeps for dead tasks.
SWEEP_INTERVAL = 30.0
#: Attempts before a task whose workers keep dying (or keep failing retriably) fails.
MAX_ATTEMPTS = 3
#: Seconds before RQ runs a queue entry again when it failed outside the task (the
#: database was locked or unreachable while claiming): without these the entry is gone
#: and the task stays PENDING with nothing queued to run it.
QUEUE_RETRY_INTERVALS: tuple[int, ...] = (10, 60, 300)
#: RQ job timeout of one task in seconds (transfers; mass-transfer partitions are longer).
TASK_TIMEOUT = 20 * 60
MASS_TRANSFER_TASK_TIMEOUT = 24 * 60 * 60
#: Threads of the inline runner and of the local worker.
INLINE_WORKERS = 2

#: Without Redis, tasks run in a detached local worker process per data directory
#: ("process"), so that a notebook kernel's crash, restart or Ctrl-C never touches them;
#: "inline" runs them in threads of the calling process (tests, single scripts).
LOCAL_RUNNER = "process"
#: The local worker (embedded mode without Redis): seconds between looks at the queue,
#: between heartbeats (each also polls for a cancel request), before its heartbeat file
#: counts as stale, to let running tasks record PENDING when it stops, and without work
#: before it exits by itself (the next submitted job starts it again).
LOCAL_WORKER_POLL = 0.5
LOCAL_HEARTBEAT_INTERVAL = 1.0
LOCAL_WORKER_STALE_AFTER = 20.0
LOCAL_WORKER_STOP_GRACE = 20.0
LOCAL_WORKER_IDLE_EXIT = 600.0
#: ``wait()`` raises when no runner has been seen for this long while the job waits.
NO_RUNNER_GRACE = 30.0
#: Prefix of the RQ queue names (``<prefix>-<priority>``).
QUEUE_PREFIX = "adit-wb"

#: ADIT's START_*_UNVERIFIED inverted: when True, jobs of users without the staff
#: permission wait as UNVERIFIED until staff verify them (ADIT's default: False).
REQUIRE_VERIFICATION = False

#: Row limits for users without the unlimited-batch-size permission (ADIT's values).
MAX_BATCH_QUERY_ROWS = 1000
MAX_BATCH_TRANSFER_ROWS = 500
#: Studies of one selective transfer without the staff permission.
MAX_SELECTIVE_STUDIES = 10
#: Batch files larger than this are refused before they are parsed (ADIT: 5 MB).
MAX_BATCH_FILE_BYTES = 5 * 1024 * 1024
#: Hard cap on rows even for staff, so that a wrong file cannot flood the queue.
HARD_MAX_ROWS = 100_000

#: Before queueing a transfer, ask the source (one C-FIND per 50 UIDs) whether it holds
#: the studies, for at most this many studies (queue-mechanics tests switch it off).
CHECK_STUDIES_AT_SUBMIT = True
MAX_CHECKED_STUDIES = 500

#: Mass transfer: smallest time window a capped study query is split down to (minutes).
MIN_WINDOW_MINUTES = 30

# The finished mail's SMTP server and the time windows are settings (ADIT_WB_SMTP_*,
# ADIT_WB_MAIL_DOMAIN, ADIT_WB_TIME_WINDOWS): admins set them, unlike these tunables.
