"""A job's progress as data, and the bar ``wait()`` draws from it.

Progress is counted in instances and bytes where the executor reports them (transfers),
else in tasks (batch query). The bar is tqdm's (the ipywidgets one in a notebook, a text
bar in a terminal) or a plain line without tqdm; it turns red when the job fails, shows
retries and their reasons, and ends with one plain line saying what really happened,
so that a saved notebook tells the truth even where the widget is not rendered.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TransferError, WorkbenchError
from .status import FINAL_JOB_STATUSES, JobStatus

__all__ = [
    "JobFailed",
    "NoRunner",
    "Progress",
    "ProgressBar",
    "files_changed",
    "follow",
    "format_bytes",
    "format_seconds",
]


# The exceptions of ``wait()`` live here, beside the wait loop both job handles share,
# not in ``handle``: the remote client raises them without importing the store.
class JobFailed(TransferError):
    """``wait()`` ended on a job that failed (or was canceled); the message says why.

    Attributes:
        job_id: The job.
        status: Its final status.
        reasons: The first messages of its failed (or canceled) tasks.
    """

    def __init__(self, message: str, *, job_id: int, status: JobStatus, reasons: list[str]):
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.reasons = reasons


class NoRunner(WorkbenchError):
    """``wait()`` found nothing running the job's tasks (no live worker) for a while."""


def format_bytes(n: float) -> str:
    """``1536`` → ``"1.5 kB"`` (decimal units, as file managers show)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def format_seconds(s: float) -> str:
    """``75`` → ``"1:15"``; ``3700`` → ``"1:01:40"``."""
    s = max(0, round(s))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


@dataclass(frozen=True)
class Progress:
    """Tasks per status, and instances and bytes done where the executor reports them.

    ``retries`` holds the messages of tasks waiting for another attempt (the reason is
    in each); ``failures`` the first messages of failed tasks.
    """

    status: JobStatus
    total: int
    finished: int
    counts: dict[str, int]
    items_done: int
    items_total: int | None
    bytes_done: int = 0
    bytes_total: int | None = None
    retries: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Share done: instances when known, else finished tasks (1.0 without tasks)."""
        if self.status in (JobStatus.SUCCESS, JobStatus.WARNING):
            return 1.0
        if self.items_total:
            return min(1.0, self.items_done / self.items_total)
        return self.finished / self.total if self.total else 1.0

    @property
    def unit(self) -> str:
        """What the bar counts: ``instances`` when the tasks report them, else ``tasks``."""
        return "instances" if self.items_total else "tasks"

    @property
    def done_total(self) -> tuple[int, int]:
        """(done, total) in :attr:`unit`."""
        if self.items_total:
            return self.items_done, self.items_total
        return self.finished, self.total

    def __str__(self) -> str:
        done, total = self.done_total
        text = f"{self.status}: {done}/{total} {self.unit}"
        if self.bytes_done:
            size = f"/{format_bytes(self.bytes_total)}" if self.bytes_total else ""
            text += f", {format_bytes(self.bytes_done)}{size}"
        if self.items_total:
            text += f" ({self.finished}/{self.total} tasks)"
        parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.counts.items()) if n)
        if parts and not self.items_total:
            text += f" ({parts})"
        if self.retries:
            text += f"; retrying: {self.retries[0]}"
        return text


class ProgressBar:
    """tqdm when available (the widget in Jupyter), else a plain text line on stderr."""

    def __init__(self, job_id: int, *, use_tqdm: bool = True) -> None:
        self._job_id = job_id
        self._tqdm: Any = None
        self._last = ""
        self._last_write = 0.0
        self._tty = sys.stderr.isatty() or "ipykernel" in sys.modules
        self._start = time.monotonic()
        self._first: tuple[int, int] | None = None
        self._shown = 0
        self._unit = ""
        # A pipe or log file gets plain lines: a tqdm bar there is a run of carriage returns.
        self._want_tqdm = use_tqdm and self._tty

    def _bar(self, p: Progress) -> Any:
        """The tqdm bar, made at the first update (made earlier, it shows '0task' with no
        total, and a saved notebook keeps that)."""
        if self._tqdm is None and self._want_tqdm:
            self._want_tqdm = False
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return None
            self._unit = p.unit
            unit = "inst" if p.unit == "instances" else "task"
            _, total = p.done_total
            self._tqdm = tqdm(total=total, desc=f"job {self._job_id}", unit=unit, leave=True)
        return self._tqdm

    def rate_eta(self, p: Progress) -> tuple[float | None, float | None]:
        """Bytes (or else units) per second since the bar started, and seconds left."""
        done, total = p.done_total
        if self._first is None:
            self._first = (done, p.bytes_done)
        elapsed = time.monotonic() - self._start
        if elapsed <= 0.5:
            return None, None
        units = (done - self._first[0]) / elapsed
        if p.bytes_done and p.bytes_done > self._first[1]:
            rate = (p.bytes_done - self._first[1]) / elapsed
            left = (p.bytes_total - p.bytes_done) / rate if p.bytes_total else None
            if left is None and units > 0:
                left = (total - done) / units
            return rate, left
        if units > 0:
            return None, (total - done) / units
        return None, None

    def update(self, p: Progress) -> None:
        """Show ``p``."""
        rate, eta = self.rate_eta(p)
        done, total = p.done_total
        bar = self._bar(p)
        if bar is not None:
            if self._unit != p.unit:  # tasks until the first instance count arrives
                self._unit = bar.unit = "inst" if p.unit == "instances" else "task"
                bar.reset(total=total)
                self._shown = 0
            bar.total = total
            if done > self._shown:
                bar.update(done - self._shown)
                self._shown = done
            bits = [p.status.value]
            if p.bytes_done:
                bits.append(format_bytes(p.bytes_done))
            if rate:
                bits.append(f"{format_bytes(rate)}/s")
            if p.retries:
                bits.append(f"retrying: {p.retries[0][:80]}")
            bar.set_postfix_str(", ".join(bits), refresh=True)
            return
        width = 30
        filled = int(width * p.fraction)
        line = f"job {self._job_id} [{'#' * filled}{'.' * (width - filled)}] {p}"
        if rate:
            line += f", {format_bytes(rate)}/s"
        if eta is not None and p.status not in (JobStatus.SUCCESS, JobStatus.WARNING):
            line += f", ETA {format_seconds(eta)}"
        now = time.monotonic()
        if line != self._last and (self._tty or now - self._last_write > 5):
            # A terminal redraws one line; a log file or pipe gets a line every 5 s at most.
            sys.stderr.write(f"\r{line}" if self._tty else f"{line}\n")
            sys.stderr.flush()
            self._last, self._last_write = line, now

    def close(self, final: Progress | None, reason: str = "") -> None:
        """End the bar (red on failure) and write one truthful final line."""
        failed = final is not None and final.status in (JobStatus.FAILURE, JobStatus.CANCELED)
        if self._tqdm is not None:
            if failed:
                self._tqdm.colour = "red"
            self._tqdm.close()
            if failed and hasattr(self._tqdm, "container"):  # the notebook widget
                with contextlib.suppress(Exception):  # close() made it green when full
                    self._tqdm.disp(bar_style="danger", check_delay=False)
        elif self._last and self._tty:
            sys.stderr.write("\n")
        if final is None:
            return
        elapsed = format_seconds(time.monotonic() - self._start)
        line = f"job {self._job_id} {final} in {elapsed}"
        if reason:
            line += f" - {reason}"
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


#: Seconds between ``wake`` checks while :func:`follow` waits.
WAKE_CHECK = 0.02


def files_changed(paths: list[Path]) -> Callable[[], bool]:
    """A ``wake`` for :func:`follow`: whether any of ``paths`` changed (modification
    time or size, by ``stat``: microseconds) since the last call."""

    def stamps() -> list[tuple[int, int] | None]:
        found: list[tuple[int, int] | None] = []
        for path in paths:
            try:
                info = path.stat()
            except OSError:
                found.append(None)
            else:
                found.append((info.st_mtime_ns, info.st_size))
        return found

    last = stamps()

    def changed() -> bool:
        nonlocal last
        now = stamps()
        if now == last:
            return False
        last = now
        return True

    return changed


def _pause(poll: float, wake: Callable[[], bool] | None) -> None:
    """Sleep ``poll`` seconds, or less when ``wake`` says something was written."""
    if wake is None:
        time.sleep(poll)
        return
    end = time.monotonic() + poll
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(WAKE_CHECK, left))
        if wake():
            return


def follow(
    job_id: int,
    read: Callable[[], Progress | None],
    *,
    timeout: float | None,
    poll: float,
    progress: bool,
    cancel: Callable[[], object] | None,
    how_to_cancel: str,
    reasons: Callable[[], list[str]],
    watch: Callable[[JobStatus], None] | None = None,
    wake: Callable[[], bool] | None = None,
) -> tuple[Progress, list[str]]:
    """Poll ``read`` until the job is final, drawing the bar; the final progress and, for
    a failed or canceled job, the first ``reasons()``. Both job handles wait with it.

    ``read`` returns None when the progress cannot be read now (the service restarts);
    ``watch`` sees each status (the local runner's watchdog). ``wake``, a cheap check
    whether anything was written (the SQLite file changed), is asked every
    :data:`WAKE_CHECK` seconds: a write is read then instead of at the next ``poll``,
    so a job that ends is seen within a few tens of milliseconds. Ctrl-C ends waiting, with
    a note that the job goes on (``how_to_cancel``), or cancels it when ``cancel`` is
    given.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = ProgressBar(job_id, use_tqdm=True) if progress else None
    last: Progress | None = None
    try:
        while True:
            p = read()
            if p is not None:
                last = p
                if bar is not None:
                    bar.update(p)
                if p.status in FINAL_JOB_STATUSES:
                    break
                if watch is not None:
                    watch(p.status)
            if deadline is not None and time.monotonic() > deadline:
                status = last.status if last is not None else "unreadable"
                raise TimeoutError(f"job {job_id} is still {status} after {timeout} s")
            _pause(poll, wake)
    except KeyboardInterrupt:
        if cancel is not None:
            cancel()
            reason = "interrupted: the job was canceled"
            note = f"job {job_id} canceled (its running tasks stop at their next instance)."
        else:
            reason = "interrupted: the job goes on in the background"
            note = f"job {job_id} goes on in the background. {how_to_cancel}"
        if bar is not None:
            bar.close(last, reason)
        sys.stderr.write(note + "\n")
        sys.stderr.flush()
        raise
    except BaseException:
        if bar is not None:
            bar.close(last, "stopped waiting")
        raise
    assert last is not None  # the loop ends only on a final status
    why = reasons() if last.status in (JobStatus.FAILURE, JobStatus.CANCELED) else []
    if bar is not None:
        bar.close(last, why[0] if why else "")
    return last, why
