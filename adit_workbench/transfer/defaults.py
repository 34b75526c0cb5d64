"""Defaults of the transfer layer, gathered in one place (as rq does).

These belong in :class:`~adit_workbench.config.Settings` once the integrator adds them
(``ADIT_WB_TRANSFER_WORKERS`` and friends); until then they are constants here.
"""

from __future__ import annotations

import os

__all__ = [
    "ARCHIVE_NAME",
    "EXCLUDED_WHEN_PSEUDONYMIZING",
    "MOVE_POLL_SECONDS",
    "NIFTI_EXCLUDED",
    "RETRY_ATTEMPTS",
    "RETRY_WAIT_INITIAL",
    "RETRY_WAIT_MAX",
    "STAGING_PREFIX",
    "START_METHOD",
    "STREAM_CHUNK",
    "WORKERS",
]

#: Worker processes that fetch and pseudonymize (the pipeline's CPU-bound part).
WORKERS: int = os.cpu_count() or 1
#: How worker processes start ("fork": works from scripts without a main guard).
START_METHOD: str = "fork"
#: Fewest instances in a stream cut from a series (when a study has fewer series than
#: streams may run, its series are split so that every stream has work).
STREAM_CHUNK: int = 16
#: Attempts of a fetch round when the error is retriable (stamina, exponential backoff).
RETRY_ATTEMPTS: int = 3
RETRY_WAIT_INITIAL: float = 0.5
RETRY_WAIT_MAX: float = 10.0
#: Modalities left out when pseudonymizing (structured reports and presentation states
#: carry free text and references that the profile cannot clean reliably).
EXCLUDED_WHEN_PSEUDONYMIZING: frozenset[str] = frozenset({"SR", "PR", "KO"})
#: Modalities dcm2niix is not asked to convert (they have no pixel volume).
NIFTI_EXCLUDED: frozenset[str] = frozenset({"SR", "KO", "PR"})
#: Hidden staging folder inside a destination (same file system, so renames are atomic).
STAGING_PREFIX: str = ".wb-staging-"
#: How often the C-MOVE consumer looks for newly spooled instances.
MOVE_POLL_SECONDS: float = 0.05
#: File name of an archive destination inside its folder.
ARCHIVE_NAME: str = "transfer.zip"
