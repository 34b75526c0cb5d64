"""A researcher's notebook, in real kernels: jobs survive a killed kernel, a restart and
Ctrl-C on ``wait()``; a transfer to a missing folder fails at once with the reason; a
filtered ``Results.df`` is transferred as it is."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from jupyter_client.manager import KernelManager

from .conftest import BIG_INSTANCES, Lab, kill, processes_of_session, run, stdout, text


def _delivered(folder: Path) -> list[str]:
    return [
        p.name
        for p in folder.rglob("*.dcm")
        if not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


def _until_delivering(folder: Path, at_least: int = 5, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(_delivered(folder)) < at_least:
        assert time.monotonic() < deadline, "the job delivered nothing"
        time.sleep(0.02)


def test_a_killed_kernel_does_not_stop_the_job(
    lab: Lab, kernel: Callable[[], KernelManager]
) -> None:
    out = lab.folder("KILLED")
    first = kernel()
    nb = run(
        first,
        lab.setup_code("KILLED"),
        "job = wb.transfer(hits, to='KILLED', pseudonym='K1')\nprint(job.id)",
    )
    job_id = int(stdout(nb.cells[1]).strip())
    _until_delivering(out)
    dead = kill(first)  # a crash in the middle of the transfer
    second = kernel()
    nb = run(
        second,
        lab.setup_code(),
        f"job = wb.jobs[{job_id}]\njob.wait(300)\nprint(job.status, job.tasks['attempts'].sum())",
    )
    print(text(nb.cells[1]))
    assert stdout(nb.cells[1]).split() == ["SUCCESS", "1"]  # one attempt: nothing was lost
    # The saved output ends with a truthful line, whatever the widget's snapshot says.
    assert f"job {job_id} SUCCESS: {BIG_INSTANCES}/{BIG_INSTANCES} instances" in text(nb.cells[1])
    names = _delivered(out)
    assert len(names) == len(set(names)) == BIG_INSTANCES  # every instance, once
    assert processes_of_session(dead) == []  # nothing of the dead kernel lives on


def test_a_kernel_restart_mid_job_leaves_it_running(
    lab: Lab, kernel: Callable[[], KernelManager]
) -> None:
    out = lab.folder("RESTART")
    km = kernel()
    nb = run(
        km,
        lab.setup_code("RESTART"),
        "job = wb.transfer(hits, to='RESTART', pseudonym='R1')\nprint(job.id)",
    )
    job_id = int(stdout(nb.cells[1]).strip())
    _until_delivering(out)
    # The Restart button: a clean shutdown (the interpreter exits, atexit runs), then a
    # new kernel process. (A fresh manager: reusing the ports hung on a loaded machine.)
    km.shutdown_kernel(now=False)
    nb = run(
        kernel(),
        lab.setup_code(),
        f"job = wb.jobs[{job_id}]\njob.wait(300)\n"
        "print(job.status, job.tasks['status'].tolist(), job.tasks['attempts'].tolist())",
    )
    assert stdout(nb.cells[1]).strip() == "SUCCESS ['SUCCESS'] [1]"
    assert len(set(_delivered(out))) == BIG_INSTANCES


def _delivering(folder: Path, at_least: int = 5) -> Callable[[], bool]:
    return lambda: len(_delivered(folder)) >= at_least


def test_ctrl_c_on_wait_says_the_job_goes_on_and_can_cancel_it(
    lab: Lab, kernel: Callable[[], KernelManager]
) -> None:
    km = kernel()
    goes_on, canceled = lab.folder("CTRLC"), lab.folder("CANCEL")
    run(km, lab.setup_code("CTRLC", "CANCEL"), "job = wb.transfer(hits, to='CTRLC')")
    nb = run(km, "job.wait()", allow_errors=True, interrupt_when=_delivering(goes_on))
    interrupted = text(nb.cells[0])
    assert "KeyboardInterrupt" in interrupted, interrupted
    assert "goes on in the background" in interrupted and ".cancel()" in interrupted
    nb = run(km, "job.wait(300)\nprint(job.status)")
    assert stdout(nb.cells[0]).strip() == "SUCCESS"  # the interrupt did not reach the job
    assert len(set(_delivered(goes_on))) == BIG_INSTANCES
    run(km, "job2 = wb.transfer(hits, to='CANCEL')")
    nb = run(
        km,
        "job2.wait(cancel_on_interrupt=True)",
        allow_errors=True,
        interrupt_when=_delivering(canceled),
    )
    assert "canceled" in text(nb.cells[0]), text(nb.cells[0])
    nb = run(km, "job2.wait(60, raise_on_failure=False)\nprint(job2.status)")
    assert stdout(nb.cells[0]).strip() == "CANCELED"
    assert len(_delivered(canceled)) < BIG_INSTANCES


def test_a_missing_folder_fails_at_once_with_the_reason(
    lab: Lab, kernel: Callable[[], KernelManager]
) -> None:
    gone = lab.tmp / "no" / "such" / "folder"
    nb = run(
        kernel(),
        lab.setup_code(),
        f"wb.add_folder('GONE', {str(gone)!r})\n"
        "import time\nbefore = len(wb.jobs.list())\nt0 = time.monotonic()\n"
        "try:\n    wb.transfer(hits, to='GONE', pseudonym='G1')\n"
        "except aw.InputError as exc:\n    print(type(exc).__name__, '|', exc)\n"
        "print(f'elapsed {time.monotonic() - t0:.3f}')\n"
        "print('new jobs', len(wb.jobs.list()) - before)",
    )
    out = text(nb.cells[1])
    assert f"InputError | destination GONE: folder {gone} does not exist" in out
    assert "new jobs 0" in out  # refused before anything was queued
    print(out)  # the elapsed time goes to the report, not into an assertion


def test_a_filtered_results_frame_is_transferred(
    lab: Lab, kernel: Callable[[], KernelManager]
) -> None:
    nb = run(
        kernel(),
        lab.setup_code("FRAME"),
        "df = wb.node('SANDBOX').find_studies(patient_id='SYN*').df\n"
        "mask = df['ModalitiesInStudy'].str.contains('CT')\n"
        "job = wb.transfer(df[mask], to='FRAME', pseudonym='F1').wait(300)\n"
        "print(int(mask.sum()), len(job.tasks), job.status)",
        "wb.jobs",
    )
    count, tasks, status = stdout(nb.cells[1]).split()
    assert int(count) == int(tasks) >= 1 and status == "SUCCESS"
    table = nb.cells[2].outputs[0].data
    assert "<table" in table["text/html"] and "selective_transfer" in table["text/plain"]
