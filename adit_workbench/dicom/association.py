"""DIMSE associations: opening them with the settings' timeouts, pooling, error mapping.

A node holds one :class:`AssociationPool`. A lease hands out an established association
of the wanted :class:`AssociationKind`, reusing an idle one when possible, and never lets
more than ``limit`` associations to the node be open at once: a PACS counts open
associations per calling AE, and a busy archive refuses the ones over its limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.association import Association

from ..errors import AssociationRejected, NodeError, NodeTimeout, NodeUnreachable
from . import nodelay, reactor

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "GET_STORAGE_SOP_CLASSES",
    "QR_MODELS",
    "VERIFICATION",
    "AssociationKind",
    "AssociationPool",
    "PooledAssociation",
    "lost_association_error",
]

log = logging.getLogger(__name__)

#: Storage SOP classes proposed on C-STORE associations, and on C-GET (:mod:`.scu`) when
#: the classes of the study are unknown.
#: pynetdicom allows 128 contexts; its common set of 120 leaves room for the two Q/R GET
#: models. The transfer layer may narrow this to the classes a study holds.
GET_STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    str(cx.abstract_syntax) for cx in StoragePresentationContexts
)

# Elapsed time above this share of a timeout means pynetdicom gave up waiting, rather
# than the peer refusing or aborting (pynetdicom reports both the same way).
_TIMEOUT_SHARE = 0.9


VERIFICATION = "1.2.840.10008.1.1"
#: Query/Retrieve information model SOP classes by (root, service). Spelled out because
#: pynetdicom generates its sop_class names at import time, invisible to type checkers.
QR_MODELS: dict[tuple[str, str], str] = {
    ("patient", "find"): "1.2.840.10008.5.1.4.1.2.1.1",
    ("patient", "move"): "1.2.840.10008.5.1.4.1.2.1.2",
    ("patient", "get"): "1.2.840.10008.5.1.4.1.2.1.3",
    ("study", "find"): "1.2.840.10008.5.1.4.1.2.2.1",
    ("study", "move"): "1.2.840.10008.5.1.4.1.2.2.2",
    ("study", "get"): "1.2.840.10008.5.1.4.1.2.2.3",
}


class AssociationKind(StrEnum):
    """Which presentation contexts an association carries."""

    #: Verification, C-FIND and C-MOVE for both Q/R roots.
    QUERY = "query"
    #: Storage contexts as SCU (we send with C-STORE).
    STORE = "store"


_QUERY_CONTEXTS = (
    VERIFICATION,
    QR_MODELS["study", "find"],
    QR_MODELS["patient", "find"],
    QR_MODELS["study", "move"],
    QR_MODELS["patient", "move"],
)


class PooledAssociation:
    """An established association plus what the pool and the operations need to know."""

    def __init__(self, assoc: Association, kind: AssociationKind) -> None:
        self.assoc = assoc
        self.kind = kind
        self.uses = 0
        self.last_used = time.monotonic()
        self._msg_id = 0

    def next_message_id(self) -> int:
        """A fresh DIMSE message ID for this association (needed to C-CANCEL)."""
        self._msg_id = self._msg_id % 65535 + 1
        return self._msg_id

    @property
    def usable(self) -> bool:
        return bool(self.assoc.is_established)

    def end(self) -> None:
        """Release the association, aborting it if the release fails."""
        try:
            if self.assoc.is_established:
                self.assoc.release()
        except Exception:  # the peer may be gone already; abort cannot make it worse
            log.debug("release failed, aborting", exc_info=True)
            self.assoc.abort()


def lost_association_error(node: str, operation: str, waited: float, timeout: float) -> NodeError:
    """The error for a response that never came: a timeout or an abort by the peer."""
    if waited >= timeout * _TIMEOUT_SHARE:
        return NodeTimeout(node, operation, f"no response within {timeout:g} s")
    return AssociationRejected(node, operation, "the association was aborted by the peer")


class AssociationPool:
    """At most ``limit`` open associations to one node, reused between operations.

    Parameters
    ----------
    node:
        Node name, for error messages.
    host, port, called_ae:
        The peer.
    calling_ae:
        Our AE title.
    settings:
        Source of the connect, DIMSE and network timeouts.
    limit:
        Most associations open at once (``ServerSpec.max_associations``).
    idle_timeout:
        Idle associations older than this are released instead of reused: PACS close
        idle associations (Orthanc after 30 s), and a reused dead one costs a retry.
    """

    def __init__(
        self,
        node: str,
        *,
        host: str,
        port: int,
        called_ae: str,
        calling_ae: str,
        settings: Settings,
        limit: int = 2,
        idle_timeout: float = 15.0,
    ) -> None:
        nodelay.install()
        # Reused associations lose responses to pynetdicom's reactor without it.
        reactor.install()
        self.node = node
        self.host = host
        self.port = port
        self.called_ae = called_ae
        self.calling_ae = calling_ae
        self.settings = settings
        self.limit = max(1, limit)
        self.idle_timeout = idle_timeout
        self._cond = threading.Condition()
        self._idle: list[PooledAssociation] = []
        self._open = 0
        self._closed = False

    # -- leasing -----------------------------------------------------------------------
    @contextmanager
    def lease(
        self, kind: AssociationKind, operation: str, *, fresh: bool = False
    ) -> Iterator[PooledAssociation]:
        """An established association of ``kind``, exclusively for the ``with`` block.

        ``fresh`` skips idle associations (used to retry after a stale one died).
        """
        pooled = self._acquire(kind, operation, fresh)
        try:
            yield pooled
        finally:
            self._give_back(pooled)

    @contextmanager
    def slot(self, operation: str) -> Iterator[None]:
        """Room for one association the caller opens itself (:mod:`.scu`), within the
        limit: the ``with`` block waits, like a lease, until one is free."""
        self._reserve(None, operation, fresh=True)
        try:
            yield
        finally:
            self._unreserve()

    def _acquire(self, kind: AssociationKind, operation: str, fresh: bool) -> PooledAssociation:
        reused = self._reserve(kind, operation, fresh)
        if reused is not None:
            return reused
        try:
            pooled = self._open_association(kind, operation)
        except BaseException:
            self._unreserve()
            raise
        pooled.uses = 1
        return pooled

    def _reserve(
        self, kind: AssociationKind | None, operation: str, fresh: bool
    ) -> PooledAssociation | None:
        """An idle association of ``kind`` (unless ``fresh``), or None and one more
        counted open: the caller opens it."""
        deadline = time.monotonic() + self.settings.network_timeout
        to_end: list[PooledAssociation] = []
        try:
            with self._cond:
                while True:
                    self._drop_stale(to_end)
                    if not fresh:
                        for pooled in reversed(self._idle):
                            if pooled.kind is kind:
                                self._idle.remove(pooled)
                                pooled.uses += 1
                                return pooled
                    if self._open < self.limit:
                        self._open += 1
                        return None
                    if self._idle:
                        # Full, but an idle association of another kind can make room.
                        to_end.append(self._idle.pop(0))
                        self._open -= 1
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._cond.wait(remaining):
                        raise NodeTimeout(
                            self.node,
                            operation,
                            f"all {self.limit} associations stayed busy for "
                            f"{self.settings.network_timeout:g} s",
                        )
        finally:
            for old in to_end:
                old.end()

    def _unreserve(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def _drop_stale(self, to_end: list[PooledAssociation]) -> None:
        now = time.monotonic()
        for pooled in list(self._idle):
            if not pooled.usable or now - pooled.last_used > self.idle_timeout:
                self._idle.remove(pooled)
                self._open -= 1
                to_end.append(pooled)

    def _give_back(self, pooled: PooledAssociation) -> None:
        pooled.last_used = time.monotonic()
        with self._cond:
            keep = pooled.usable and not self._closed
            if keep:
                self._idle.append(pooled)
            else:
                self._open -= 1
            self._cond.notify()
        if not keep:
            pooled.end()

    def release_idle(self) -> None:
        """Release the idle associations now (the pool stays open).

        An idle pynetdicom association is not free: its two threads poll at 1 kHz, 6 %
        of a core and the GIL besides. A caller that will not query for a while (a
        transfer fetching over WADO-RS or in worker processes) lets them go.
        """
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for pooled in idle:
            pooled.end()

    def close(self) -> None:
        """Release idle associations; busy ones are released when given back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for pooled in idle:
            pooled.end()

    @property
    def open_count(self) -> int:
        """Associations open right now (idle and busy)."""
        with self._cond:
            return self._open

    # -- opening -----------------------------------------------------------------------
    def _make_ae(self, kind: AssociationKind) -> AE:
        ae = AE(ae_title=self.calling_ae)
        ae.connection_timeout = self.settings.connect_timeout
        ae.acse_timeout = self.settings.connect_timeout
        ae.dimse_timeout = self.settings.dimse_timeout
        ae.network_timeout = self.settings.network_timeout
        if kind is AssociationKind.QUERY:
            for sop in _QUERY_CONTEXTS:
                ae.add_requested_context(sop)
        else:
            for uid in GET_STORAGE_SOP_CLASSES:
                ae.add_requested_context(uid)
        return ae

    def _open_association(self, kind: AssociationKind, operation: str) -> PooledAssociation:
        if self._closed:
            raise NodeError(self.node, operation, "the node has been closed")
        ae = self._make_ae(kind)
        connected = threading.Event()
        # pynetdicom reports a refused connection as an aborted association; whether the
        # TCP connection opened tells the two apart.
        handlers: list[Any] = [(evt.EVT_CONN_OPEN, lambda event: connected.set())]
        started = time.monotonic()
        try:
            assoc = ae.associate(
                self.host,
                self.port,
                ae_title=self.called_ae,
                evt_handlers=handlers,
                max_pdu=16382,
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise NodeUnreachable(self.node, operation, f"cannot associate: {exc}") from exc
        if assoc.is_established:
            return PooledAssociation(assoc, kind)
        waited = time.monotonic() - started
        where = f"{self.host}:{self.port}"
        if assoc.is_rejected:
            primitive = getattr(assoc.acceptor, "primitive", None)
            reason = getattr(primitive, "reason_str", "") or "no reason given"
            raise AssociationRejected(
                self.node, operation, f"association rejected by {self.called_ae}: {reason}"
            )
        if assoc.is_aborted and connected.is_set():
            raise AssociationRejected(
                self.node,
                operation,
                "association aborted during negotiation (no presentation context accepted?)",
            )
        if waited >= self.settings.connect_timeout * _TIMEOUT_SHARE:
            raise NodeTimeout(
                self.node,
                operation,
                f"no association with {where} within {self.settings.connect_timeout:g} s",
            )
        raise NodeUnreachable(self.node, operation, f"cannot connect to {where}")
