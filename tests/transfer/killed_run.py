"""A transfer that SIGKILLs its own process after N delivered instances.

Run as ``python -m tests.transfer.killed_run SPEC.json``; used by test_resume.py to leave
a destination exactly as a crash half-way leaves it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from adit_workbench.config import Settings
from adit_workbench.deid import Profile, Pseudonymizer
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import ServerSpec
from adit_workbench.transfer import FolderDestination, TransferProgress, transfer_study, worker
from adit_workbench.transfer.layout import InstanceInfo, Placement
from tests.transfer.conftest import ALL, SECRET


def _slow_placement() -> None:
    """Workers (forked: they inherit this) deliver slower than the parent counts, so the
    kill lands half-way rather than after the workers have placed everything."""
    real = worker._place

    def slow(placement: Placement, info: InstanceInfo) -> InstanceInfo:
        time.sleep(0.3)
        return real(placement, info)

    worker._place = slow


def main(path: str) -> None:
    job = json.loads(Path(path).read_text())
    settings = Settings(**job["settings"])
    spec = ServerSpec(**job["spec"], capabilities=ALL)
    kill_after = int(job["kill_after"])

    def progress(p: TransferProgress) -> None:
        if p.instances_done >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    _slow_placement()
    pseudonymizer = Pseudonymizer(SECRET, Profile.adit("SUBJ-01", trial_id="T1"))
    transfer_study(
        DicomServer(spec, settings),
        FolderDestination(Path(job["out"]), "job"),
        job["study"],
        via=job["via"],
        pseudonymizer=pseudonymizer,
        progress=progress,
    )


if __name__ == "__main__":
    main(sys.argv[1])
