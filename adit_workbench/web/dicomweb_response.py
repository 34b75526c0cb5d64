"""A streamed answer whose body is produced in a thread of its own, ahead of the socket.

Starlette's :class:`~starlette.responses.StreamingResponse` over a plain iterator asks
the thread pool for each next chunk (a round trip through anyio per part) and produces
nothing while the event loop writes. :class:`ThreadedStream` runs the iterator in one
thread that keeps a few megabytes ahead of the socket (C-GET sub-operations are answered
and instances pseudonymized while the previous part is being written), and the event
loop sends what has accumulated since its last write as one chunk of up to
:data:`CHUNK` bytes, so small parts (DICOM JSON, small images) leave in large writes and
large ones are not copied.

Memory stays flat: the thread waits while :data:`AHEAD` bytes are queued (one piece
larger than that passes alone). A client that goes away stops the thread at its next
piece and the iterator is closed in that thread (its ``GeneratorExit`` handler runs as
it does under Starlette); a failure of the iterator is raised in the event loop after
what came before it was sent, so the connection is cut without the closing delimiter.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["AHEAD", "CHUNK", "ThreadedStream"]

#: Bytes the producing thread may be ahead of the socket before it waits.
AHEAD = 4 << 20
#: Largest chunk the event loop joins from several queued pieces.
CHUNK = 256 << 10


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class ThreadedStream(StreamingResponse):
    """A :class:`StreamingResponse` whose sync ``content`` runs in a producing thread."""

    def __init__(
        self,
        content: Iterator[bytes],
        *,
        media_type: str,
        headers: dict[str, str] | None = None,
        name: str = "wb-stream",
    ) -> None:
        super().__init__(iter(()), media_type=media_type, headers=headers)
        self._content = content
        self._name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        pieces: collections.deque[object] = collections.deque()
        ready = asyncio.Event()
        room = threading.Condition()
        queued = [0]  # bytes in ``pieces``, under ``room``
        stop = threading.Event()

        def wake() -> None:
            ready.set()

        def put(item: object, size: int) -> bool:
            with room:
                while queued[0] and queued[0] + size > AHEAD and not stop.is_set():
                    room.wait(0.5)
                if stop.is_set():
                    return False
                queued[0] += size
                pieces.append(item)
            try:
                loop.call_soon_threadsafe(wake)
            except RuntimeError:  # the loop is closed: the service is stopping
                stop.set()
                return False
            return True

        def produce() -> None:
            content = self._content
            try:
                for piece in content:
                    if not put(piece, len(piece)):
                        return
                put(_END, 0)
            except BaseException as exc:  # raised again in the event loop
                put(_Failed(exc), 0)
            finally:
                close = getattr(content, "close", None)
                if close is not None:
                    close()  # here: a generator is closed in the thread that ran it

        def take() -> tuple[bytes | None, object]:
            """What has accumulated (joined up to about CHUNK) and the end marker, if any."""
            batch: list[bytes] = []
            size = 0
            last: object = None
            with room:
                while pieces and size < CHUNK:
                    item = pieces.popleft()
                    if not isinstance(item, bytes):
                        last = item
                        break
                    batch.append(item)
                    size += len(item)
                queued[0] -= size
                if not pieces:
                    ready.clear()
                room.notify()
            if not batch:
                return None, last
            return (batch[0] if len(batch) == 1 else b"".join(batch)), last

        async def stream() -> None:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})  # fmt: skip
            while True:
                await ready.wait()
                body, last = take()
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if isinstance(last, _Failed):
                    raise last.error
                if last is _END:
                    break
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        thread = threading.Thread(target=produce, name=self._name, daemon=True)
        thread.start()
        sender = asyncio.ensure_future(stream())
        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait((sender, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            with room:
                room.notify_all()
            for task in (sender, watcher):
                task.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)
            # The producer stops at its next piece; waited for off the loop (it writes
            # the audit row as it closes the iterator).
            await loop.run_in_executor(None, thread.join)
        if not sender.cancelled() and sender.exception() is not None:
            raise sender.exception()  # type: ignore[misc]
