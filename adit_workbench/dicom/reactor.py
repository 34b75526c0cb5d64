"""A fix for pynetdicom's reactor race, which loses C-FIND responses on fast links.

pynetdicom 3.0 runs a reactor thread per association that takes any complete DIMSE
message off the queue and serves it as a request. Each ``send_*`` pauses it first::

    self._reactor_checkpoint.clear()
    while not self._is_paused:      # wait until the reactor sits at the checkpoint
        time.sleep(0.0001)
    ...send, then read responses... ; self._reactor_checkpoint.set()

``_is_paused`` is only reset by the reactor thread itself after it wakes. When one query
follows another on a reused association, the next ``send_c_find`` runs before the
reactor has woken from the previous ``set()``: it sees the stale ``_is_paused = True``,
sends, and the reactor then wakes and steals the first response (logging "Received
unexpected C-FIND service message", pynetdicom issue #875). With TCP_NODELAY the
response is fast enough to be stolen several times per hundred queries: matches go
missing silently, or the association aborts.

:func:`install` closes the window: a service's ``clear()`` of the checkpoint and the
reactor's non-blocking take from the message queue share one lock, and the reactor takes
nothing while the checkpoint is cleared. A service clears the checkpoint before it sends,
so its responses can no longer reach the reactor; requests from the peer between services
are served as before. It belongs with the node layer's other pynetdicom patch
(``nodelay.install``): :class:`~.association.AssociationPool` installs both, so
C-GET, C-MOVE and C-STORE on pooled associations are covered as well as C-FIND.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pynetdicom import association, dimse

__all__ = ["STREAMING_LOOP_DELAY", "install", "installed", "streaming"]

_lock = threading.Lock()
_installed = False


class _Checkpoint(threading.Event):
    """An association's reactor checkpoint whose ``clear()`` excludes the reactor's take."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            super().clear()


def install() -> None:
    """Patch pynetdicom so that the reactor cannot take a running service's responses."""
    global _installed
    with _lock:
        if _installed:
            return
        original_init = association.Association.__init__
        original_get_msg = dimse.DIMSEServiceProvider.get_msg

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            checkpoint = _Checkpoint()
            if self._reactor_checkpoint.is_set():
                checkpoint.set()
            self._reactor_checkpoint = checkpoint

        def get_msg(self: Any, block: bool = False) -> Any:
            # Only the reactor asks without blocking; services block for their responses.
            checkpoint = getattr(self.assoc, "_reactor_checkpoint", None)
            if block or not isinstance(checkpoint, _Checkpoint):
                return original_get_msg(self, block)
            with checkpoint.lock:
                if not checkpoint.is_set():
                    return None, None
                return original_get_msg(self, False)

        association.Association.__init__ = __init__  # type: ignore[method-assign]
        dimse.DIMSEServiceProvider.get_msg = get_msg  # type: ignore[method-assign]
        _installed = True


def installed() -> bool:
    """Whether :func:`install` has run in this process."""
    return _installed


#: How often an association's reactor looks for data while instances stream over it.
STREAMING_LOOP_DELAY = 0.0002


@contextlib.contextmanager
def streaming(assoc: Any) -> Iterator[None]:
    """Poll ``assoc``'s reactor faster while instances stream over it.

    pynetdicom's DUL reactor sleeps 1 ms whenever it finds nothing to do, and C-GET
    sub-operations (like C-STOREs arriving from a C-MOVE) go one at a time: that sleep
    sits in the round trip of every instance, a third of a 0.5 MB instance's time. An
    idle pooled association goes back to the 1 ms sleep, which costs no CPU.
    """
    dul = getattr(assoc, "dul", None)
    idle = getattr(dul, "_run_loop_delay", None)
    if dul is None or idle is None:
        yield
        return
    dul._run_loop_delay = min(idle, STREAMING_LOOP_DELAY)
    try:
        yield
    finally:
        dul._run_loop_delay = idle
