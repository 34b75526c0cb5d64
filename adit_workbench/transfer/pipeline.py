"""One round of a transfer: worker processes fetch and prepare, this process delivers.

::

    producer thread ──submit──▶ process pool (fetch · pseudonymize · stage)
                                    │ a pipe of InstanceInfo (bounded)
                                    ▼
    this thread ── sink.put() ──▶ destination   ── progress callback

The producer submits fetch streams (C-GET, WADO-RS), or batches of files as the C-MOVE
receiver spools them or a folder source lists them. The pipe back is bounded, so when
delivery is slower than fetching, workers block, the C-GET association stops reading
and the server slows down: memory holds a few instances whatever the study's size.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import TransferError
from .defaults import START_METHOD
from .destinations import Sink
from .layout import InstanceInfo
from .result import TransferProgress
from .worker import Stream, WorkerConfig, fetch_stream, init_worker, prepare_files

__all__ = ["RoundError", "Submitter", "Tally", "run_round"]

log = logging.getLogger(__name__)

_POLL = 0.1
_WAKE = "wake"


class RoundError(TransferError):
    """A fetch stream failed; ``retriable`` as the underlying error was."""

    def __init__(self, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass
class Tally:
    """Counts across rounds (what the result reports)."""

    total: int = 0
    delivered: set[str] = field(default_factory=set)  # source SOP UIDs
    excluded: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    out_to_source: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    #: The error that ended the last round (no PHI: node, operation, status), if any.
    error: str = ""
    error_retriable: bool = True

    def progress(self) -> TransferProgress:
        done = len(self.delivered)
        estimate = round(self.bytes / done * self.total) if done else None
        return TransferProgress(done, self.total, self.bytes, estimate)


class Submitter:
    """Handed to the producer: submit streams or file batches to the pool."""

    def __init__(self, pool: ProcessPoolExecutor, register: Callable[[int, Future[Any]], None]):
        self._pool = pool
        self._register = register
        self._ids = itertools.count(1)

    def stream(self, stream: Stream) -> None:
        """Fetch and prepare one stream in a worker."""
        task_id = next(self._ids)
        self._register(task_id, self._pool.submit(fetch_stream, replace(stream, task_id=task_id)))

    def files(self, paths: list[str], *, delete: bool) -> None:
        """Prepare files in a worker (deleted afterwards if ``delete``: spooled ones)."""
        if paths:
            task_id = next(self._ids)
            self._register(task_id, self._pool.submit(prepare_files, task_id, paths, delete))


class _Messages:
    """Worker-to-parent message batches over one pipe, each written whole under a lock.

    A ``multiprocessing.Queue`` pickles and writes in a feeder thread in every worker,
    which contends with the worker's fetch loop for the GIL at each instance (measured:
    C-GET's C-STORE-RSP ``sendall`` waited 0.5 ms for it). Here the writer's own thread
    writes. The pipe's buffer (64 KiB: a few hundred messages) is the bound: workers
    block when delivery falls behind.
    """

    def __init__(self, ctx: Any) -> None:
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._lock = ctx.Lock()

    def put(self, item: Any) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._writer.send_bytes(data)

    def get(self, timeout: float) -> Any:
        """The next message; :class:`queue.Empty` after ``timeout`` seconds without one."""
        if not self._reader.poll(timeout):
            raise queue.Empty
        return pickle.loads(self._reader.recv_bytes())

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


def _context() -> Any:
    # fork, as deid's folder pool: forkserver and spawn re-import the caller's __main__,
    # which breaks every script without a main guard. The children only build fresh
    # associations and sessions of their own, never touching the parent's.
    method = START_METHOD if START_METHOD in multiprocessing.get_all_start_methods() else None
    return multiprocessing.get_context(method)


def run_round(
    *,
    sink: Sink,
    config: WorkerConfig,
    workers: int,
    produce: Callable[[Submitter], None],
    tally: Tally,
    progress: Callable[[TransferProgress], None] | None,
    cancelled: Callable[[], bool],
) -> list[tuple[str, str, bool]]:
    """Run one round; return the errors of failed streams ``(type, text, retriable)``.

    Errors of the producer (e.g. the C-MOVE request) and of the sink are raised.
    """
    ctx = _context()
    results = _Messages(ctx)
    stop = ctx.Event()
    lock = threading.Lock()
    futures: dict[int, Future[Any]] = {}
    emitted: dict[int, int] = {}
    received: dict[int, int] = {}
    errors: list[tuple[str, str, bool]] = []
    producer_done = threading.Event()
    producer_error: list[BaseException] = []
    sink_error: list[BaseException] = []

    def register(task_id: int, future: Future[Any]) -> None:
        with lock:
            futures[task_id] = future

        def done(f: Future[Any]) -> None:
            try:
                sent, error = f.result()
            except BaseException as exc:  # a worker died: its count is unknown
                sent, error = -1, (type(exc).__name__, str(exc), True)
            with lock:
                emitted[task_id] = sent
                if error is not None:
                    errors.append(error)
            # Wake the loop: if this task's messages are all in, the round may be over.
            with contextlib.suppress(OSError):  # closed: the round is over already
                results.put([(_WAKE, task_id, None)])

        future.add_done_callback(done)

    def finished() -> bool:
        if not producer_done.is_set():
            return False
        with lock:
            if len(emitted) < len(futures):
                return False
            return all(n < 0 or received.get(t, 0) >= n for t, n in emitted.items())

    def take(kind: str, task_id: int, payload: Any) -> bool:
        """Handle one message; True when it ends the round."""
        if kind == _WAKE:
            return finished()
        with lock:
            received[task_id] = received.get(task_id, 0) + 1
            last = emitted.get(task_id) == received[task_id]
        if stop.is_set() or sink_error:
            if kind == "ok" and payload.placed:
                _handle(kind, payload, sink, tally, None)  # complete, in place: delivered
            elif kind == "ok":
                Path(payload.staged).unlink(missing_ok=True)
        else:
            try:
                _handle(kind, payload, sink, tally, progress)
            except BaseException as exc:  # the destination failed: stop fetching, drain
                sink_error.append(exc)
                stop.set()
        return last and finished()  # the last message of an ended task

    pool = ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=ctx,
        initializer=init_worker,
        initargs=(config, results, stop),
    )
    try:

        def producer() -> None:
            try:
                produce(Submitter(pool, register))
            except BaseException as exc:  # re-raised below in the caller's thread
                producer_error.append(exc)
                stop.set()
            finally:
                producer_done.set()

        thread = threading.Thread(target=producer, name="wb-transfer-producer", daemon=True)
        thread.start()
        while True:
            if not stop.is_set() and cancelled():
                stop.set()
            try:
                batch = results.get(_POLL)
            except queue.Empty:
                if finished():
                    break
                continue
            if any([take(*message) for message in batch]):
                break
        thread.join()
    except BaseException:  # e.g. KeyboardInterrupt: stop the workers, then go
        stop.set()
        # Keep reading meanwhile: a worker (or a done callback) blocked on a full pipe
        # would never see the stop, and the shutdown would wait forever.
        draining = threading.Event()
        drainer = threading.Thread(target=_discard, args=(results, draining), daemon=True)
        drainer.start()
        pool.shutdown(wait=True, cancel_futures=True)
        draining.set()
        raise
    # Every task has ended and every message is in: the workers only have to exit
    # (about 10 ms), and the executor reaps them in the background.
    pool.shutdown(wait=False)
    results.close()
    if sink_error:
        raise sink_error[0]
    if producer_error:
        raise producer_error[0]
    return errors


def _discard(results: _Messages, done: threading.Event) -> None:
    """Read and drop messages until ``done`` (staged files of dropped instances go)."""
    while not done.is_set():
        try:
            batch = results.get(_POLL)
        except (queue.Empty, OSError, EOFError):
            continue
        for kind, _task_id, payload in batch:
            if kind == "ok" and not payload.placed:
                Path(payload.staged).unlink(missing_ok=True)


def _handle(
    kind: str,
    payload: Any,
    sink: Sink,
    tally: Tally,
    progress: Callable[[TransferProgress], None] | None,
) -> None:
    if kind == "ok":
        info: InstanceInfo = payload
        if info.source_sop in tally.delivered:  # fetched twice (a retried stream)
            if not info.placed:  # a placed twin replaced the first copy: same bytes
                os.unlink(info.staged)
            return
        size = info.size if info.placed else sink.put(info)
        tally.out_to_source[info.sop_uid] = info.source_sop
        tally.delivered.add(info.source_sop)
        tally.failed.pop(info.source_sop, None)
        tally.bytes += size or info.size
        if progress is not None:
            progress(tally.progress())
        return
    sop, reason = payload
    if kind == "excluded":
        tally.excluded.add(sop)
    elif kind == "refused":
        tally.refused.add(sop)
    else:
        tally.failed[sop] = reason
