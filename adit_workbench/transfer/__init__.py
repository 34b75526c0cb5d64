"""Transfer: one study or series from any source to any destination.

Streamed (bounded queues, worker processes on every core), resumable (a re-run delivers
only what the destination lacks), verified (against an instance-level query of the
source) and retried with backoff on retriable errors::

    from adit_workbench.transfer import transfer_study
    result = transfer_study(pacs, research, study_uid, pseudonymizer=p, progress=print)
"""

from .destinations import ArchiveDestination, FolderDestination, ServerDestination
from .layout import InstanceInfo, sanitize
from .nifti import NiftiDestination
from .result import TransferProgress, TransferResult, TransferStatus
from .study import Destination, transfer_study

__all__ = [
    "ArchiveDestination",
    "Destination",
    "FolderDestination",
    "InstanceInfo",
    "NiftiDestination",
    "ServerDestination",
    "TransferProgress",
    "TransferResult",
    "TransferStatus",
    "sanitize",
    "transfer_study",
]
