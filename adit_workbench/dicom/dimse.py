"""A DICOM server reached over DIMSE: C-ECHO, C-FIND, C-GET and C-MOVE.

C-ECHO and C-FIND run on pynetdicom associations leased from the node's
:class:`~.association.AssociationPool`, so a notebook loop of many finds reuses one
association. C-GET and C-MOVE, which move every instance of a transfer, run on
associations of their own over the workbench's upper layer
(:mod:`.scu`); they take a slot of the same pool, so a process never opens more than
``spec.max_associations``. Failures are exceptions naming the node and the operation
(see :mod:`adit_workbench.errors`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydicom import Dataset
from pynetdicom import _config as pynetdicom_config

from ..errors import AssociationRejected, InputError, NodeError, NotSupported
from . import scu
from .association import (
    QR_MODELS,
    AssociationKind,
    AssociationPool,
    PooledAssociation,
    lost_association_error,
)
from .cget_split import plan_groups, receive_groups
from .node import NodeBase, QueryLevel, QueryRoot, default_root
from .retrieve import iter_cget
from .spec import Capabilities, ServerSpec
from .status import Status, category, is_pending, raise_for_status, status_code
from .storage import StoreItem, StoreResult, store_cstore

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["DimseNode", "RetrieveResult"]

T = TypeVar("T")

log = logging.getLogger(__name__)

# pynetdicom formats every request and response identifier for its debug log, even when
# nothing logs at debug level: names and IDs (PHI) in logs, and about a third of the time of
# a 500-instance C-FIND. Off for the whole process.
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False

_FIND = {root: QR_MODELS[root.value, "find"] for root in QueryRoot}
_GET = {root: QR_MODELS[root.value, "get"] for root in QueryRoot}
_MOVE = {root: QR_MODELS[root.value, "move"] for root in QueryRoot}


@dataclass(frozen=True)
class RetrieveResult:
    """The final counts of a C-GET or C-MOVE (sub-operations, as the server reports)."""

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0

    @property
    def category(self) -> str:
        """Success, Warning, Failure or Cancel."""
        return category(self.status).value

    @classmethod
    def from_status(cls, status: Dataset) -> RetrieveResult:
        """The counts of a C-GET or C-MOVE response's status Dataset."""
        return cls(
            status=status_code(status),
            completed=int(status.get("NumberOfCompletedSuboperations", 0) or 0),
            failed=int(status.get("NumberOfFailedSuboperations", 0) or 0),
            warning=int(status.get("NumberOfWarningSuboperations", 0) or 0),
        )


_STALE_SECONDS = 1.0


class _Stale(Exception):
    """A reused association turned out to be closed before the request got an answer."""


def _identifier(level: QueryLevel, query: Dataset) -> Dataset:
    identifier = Dataset()
    identifier.update(query)
    identifier.QueryRetrieveLevel = level.value
    if "SpecificCharacterSet" not in identifier:
        charset = _charset(identifier)
        if charset:
            identifier.SpecificCharacterSet = charset
    return identifier


def _charset(identifier: Dataset) -> str | None:
    """The character set a query with non-ASCII text needs (names like "Müller").

    Latin-1 when it suffices, because more archives support it than UTF-8.
    """
    texts = [
        str(element.value)
        for element in identifier
        if element.VR in ("PN", "LO", "SH", "ST", "LT", "UT") and element.value
    ]
    if all(text.isascii() for text in texts):
        return None
    try:
        for text in texts:
            text.encode("latin-1")
    except UnicodeEncodeError:
        return "ISO_IR 192"
    return "ISO_IR 100"


class DimseNode(NodeBase):
    """A DICOM server spoken to over DIMSE.

    Parameters
    ----------
    spec:
        The server (its AE title, host and port; ``max_associations`` bounds the pool).
    settings:
        Our AE title and the timeouts.
    calling_ae:
        Call with this AE title instead of ``settings.ae_title``.
    """

    def __init__(
        self, spec: ServerSpec, settings: Settings, *, calling_ae: str | None = None
    ) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.settings = settings
        self.calling_ae = calling_ae or settings.ae_title
        self.pool = AssociationPool(
            spec.name,
            host=spec.host,
            port=spec.port,
            called_ae=spec.ae_title,
            calling_ae=self.calling_ae,
            settings=settings,
            limit=spec.max_associations,
        )
        #: (study, series) -> the SOP classes found there, for C-GET proposals
        self._classes: dict[tuple[str, str], tuple[str, ...]] = {}

    def close(self) -> None:
        """Release the pooled associations."""
        self.pool.close()

    # -- one-shot operations on a leased association ----------------------------------
    def _run(
        self, kind: AssociationKind, operation: str, send: Callable[[PooledAssociation], T]
    ) -> T:
        """``send(pooled)`` on a leased association, once more on a fresh one if stale.

        A server may close an idle association just before we reuse it; that shows as
        :class:`_Stale` before any response arrived, so repeating cannot duplicate work.
        """
        for attempt in (1, 2):
            with self.pool.lease(kind, operation, fresh=attempt > 1) as pooled:
                try:
                    return send(pooled)
                except _Stale:
                    if pooled.uses > 1 and attempt == 1:
                        continue
                    raise AssociationRejected(
                        self.name, operation, "the association was closed by the peer"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _first_response_lost(self, pooled: PooledAssociation, started: float) -> bool:
        """Whether an empty first response means a dead (stale) association."""
        return pooled.uses > 1 and time.monotonic() - started < _STALE_SECONDS

    # -- C-ECHO ------------------------------------------------------------------------
    def echo(self) -> None:
        """C-ECHO; raises on a refused connection, rejection, timeout or failure status."""

        def send(pooled: PooledAssociation) -> None:
            started = time.monotonic()
            try:
                status = pooled.assoc.send_c_echo(msg_id=pooled.next_message_id())
            except ValueError as exc:
                raise NotSupported(self.name, "C-ECHO", "verification not accepted") from exc
            except RuntimeError as exc:
                raise _Stale from exc
            if not status:
                if self._first_response_lost(pooled, started):
                    raise _Stale
                raise lost_association_error(
                    self.name, "C-ECHO", time.monotonic() - started, self.settings.dimse_timeout
                )
            raise_for_status(self.name, "C-ECHO", status)

        self._run(AssociationKind.QUERY, "C-ECHO", send)

    # -- C-FIND ------------------------------------------------------------------------
    def find(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        limit: int | None = None,
        root: QueryRoot | str | None = None,
    ) -> Iterator[Dataset]:
        """Stream C-FIND matches; after ``limit`` matches a C-CANCEL ends the search.

        Study root unless ``root`` says otherwise (PATIENT level uses patient root).
        """
        level = QueryLevel.parse(level)
        chosen = default_root(level, root)
        if limit is not None and limit < 0:
            raise InputError("limit must be None or >= 0")
        return self._find(_identifier(level, query), _FIND[chosen], limit)

    def _find(self, identifier: Dataset, model: str, limit: int | None) -> Iterator[Dataset]:
        if limit == 0:
            return
        operation = "C-FIND"
        for attempt in (1, 2):
            with self.pool.lease(AssociationKind.QUERY, operation, fresh=attempt > 1) as pooled:
                stale = pooled.uses > 1
                outcome = yield from self._find_on(pooled, identifier, model, limit, stale)
                if outcome == "retry":
                    continue
                return

    def _find_on(
        self,
        pooled: PooledAssociation,
        identifier: Dataset,
        model: str,
        limit: int | None,
        reused: bool,
    ) -> Generator[Dataset, None, str]:
        operation = "C-FIND"
        assoc = pooled.assoc
        msg_id = pooled.next_message_id()
        try:
            responses = assoc.send_c_find(identifier, model, msg_id=msg_id)
        except ValueError as exc:
            raise NotSupported(self.name, operation, f"{_root_name(model)} not accepted") from exc
        except RuntimeError as exc:  # the association died between lease and send
            if reused:
                return "retry"
            raise AssociationRejected(self.name, operation, "the association was closed") from exc
        yielded = 0
        cancelled = False
        finished = False
        last = time.monotonic()
        try:
            for status, match in responses:
                if not status:
                    finished = True
                    if reused and yielded == 0 and time.monotonic() - last < _STALE_SECONDS:
                        # The server closed an idle association we tried to reuse.
                        return "retry"
                    raise lost_association_error(
                        self.name, operation, time.monotonic() - last, self.settings.dimse_timeout
                    )
                last = time.monotonic()
                if is_pending(status):
                    if match is None or cancelled:
                        continue
                    yielded += 1
                    yield match
                    if limit is not None and yielded >= limit:
                        assoc.send_c_cancel(msg_id, query_model=model)
                        cancelled = True
                    continue
                finished = True
                if cancelled and status_code(status) == Status.CANCEL:
                    return "done"
                raise_for_status(self.name, operation, status)
                return "done"
            finished = True
            return "done"
        finally:
            if not finished:
                self._abandon(pooled, responses, msg_id, model, cancelled)

    def _abandon(
        self,
        pooled: PooledAssociation,
        responses: Iterator[Any],
        msg_id: int,
        model: str,
        cancelled: bool,
    ) -> None:
        """The caller stopped early: cancel and drain, so the association stays usable.

        pynetdicom pauses its reactor until the response generator is exhausted, so an
        abandoned generator would wedge the association; abort it if draining fails.
        """
        try:
            if not cancelled and pooled.assoc.is_established:
                pooled.assoc.send_c_cancel(msg_id, query_model=model)
            for status, _ in responses:
                if not status or not is_pending(status):
                    break
        except Exception:
            log.debug("%s: draining a cancelled C-FIND failed; aborting", self.name)
            pooled.assoc.abort()

    # -- C-GET and C-MOVE --------------------------------------------------------------
    def get_stream(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        root: QueryRoot | str | None = None,
        sop_classes: Iterable[str] | None = None,
    ) -> Generator[bytes, None, RetrieveResult]:
        """C-GET as a stream of Part-10 bytes, received off the socket (:mod:`.scu`).

        Returns the :class:`RetrieveResult` when exhausted; closing it early cancels the
        C-GET at the server (within a second). Its association counts within
        ``max_associations``. ``sop_classes``: the storage classes to propose; by
        default those the server lists for the study (:meth:`sop_classes`), so that
        private and compressed instances find a context.
        """
        level = QueryLevel.parse(level)
        chosen = default_root(level, root)
        identifier = _identifier(level, query)
        classes = tuple(sop_classes) if sop_classes is not None else self.sop_classes(query)
        # More classes than one association proposes: several, planned before the slot
        # (the listing's C-FIND needs an association of its own).
        split = len(classes) > scu.MAX_STORAGE_CLASSES and plan_groups(self, query)
        with self.pool.slot("C-GET"):
            if split:
                final = yield from receive_groups(self, split, _GET[chosen], chosen.value)
            else:
                final = yield from scu.receive(
                    self, identifier, _GET[chosen], chosen.value, classes or None
                )
        raise_for_status(self.name, "C-GET", final)
        return RetrieveResult.from_status(final)

    def sop_classes(self, query: Dataset) -> tuple[str, ...]:
        """The SOP classes of the study ``query`` names (empty when unknown): the
        study's SOPClassesInStudy, else an instance-level listing."""
        study = str(query.get("StudyInstanceUID", "") or "")
        if not study:
            return ()
        series = str(query.get("SeriesInstanceUID", "") or "")
        known = self._classes.get((study, series))
        if known is None:
            known = self._classes[study, series] = self._list_sop_classes(study, series)
            while len(self._classes) > 256:  # a transfer's studies; not a whole archive
                del self._classes[next(iter(self._classes))]
        return known

    def _list_sop_classes(self, study: str, series: str) -> tuple[str, ...]:
        try:
            wanted = Dataset()
            wanted.StudyInstanceUID = study
            wanted.SOPClassesInStudy = ""
            for match in self.find(QueryLevel.STUDY, wanted, limit=1):
                listed = match.get("SOPClassesInStudy")
                if listed:
                    return tuple(dict.fromkeys(str(uid) for uid in _as_list(listed)))
            instances = Dataset()
            instances.StudyInstanceUID = study
            if series:
                instances.SeriesInstanceUID = series
            instances.SOPInstanceUID = ""
            instances.SOPClassUID = ""
            found = self.find(QueryLevel.IMAGE, instances, root=QueryRoot.STUDY)
            return tuple(dict.fromkeys(str(m.SOPClassUID) for m in found if m.get("SOPClassUID")))
        except NodeError as exc:
            log.debug("%s: SOP classes of a study unknown (%s)", self.name, exc.detail)
            return ()

    def move(
        self,
        level: QueryLevel | str,
        query: Dataset,
        destination: str,
        *,
        root: QueryRoot | str | None = None,
        cancel: threading.Event | None = None,
        message_id: int = 1,
    ) -> RetrieveResult:
        """C-MOVE to the AE title ``destination`` (which the server must know);
        ``message_id`` names it in the C-STOREs the server sends (see :mod:`.receiver`).

        Runs on an association of its own (:mod:`.scu`), counted within
        ``max_associations``: a pending response per instance moved cost pynetdicom
        about 1 ms of CPU each. Setting ``cancel`` ends the move within a second.
        """
        level = QueryLevel.parse(level)
        chosen = default_root(level, root)
        identifier = _identifier(level, query)
        with self.pool.slot("C-MOVE"):
            final = scu.move(
                self, identifier, _MOVE[chosen], chosen.value, destination, cancel, message_id
            )
        raise_for_status(self.name, "C-MOVE", final, f"destination {destination}")
        return RetrieveResult.from_status(final)

    # -- streams ---------------------------------------------------------------------
    def retrieve(
        self, level: QueryLevel | str, query: Dataset, *, root: QueryRoot | str | None = None
    ) -> Iterator[Dataset]:
        """Stream the instances named by ``query`` over C-GET (see :mod:`.retrieve`)."""
        return iter_cget(self, level, query, root=root)

    def store(self, items: Iterable[StoreItem]) -> StoreResult:
        """C-STORE datasets or files (see :mod:`.storage`)."""
        return store_cstore(self, items)

    # -- probe -------------------------------------------------------------------------
    def probe(self) -> Capabilities:
        """Measure the DIMSE services this server supports (see :mod:`.probe`)."""
        from .probe import probe_dimse

        return probe_dimse(self)


def _as_list(value: Any) -> list[Any]:
    """A multi-valued element's values (pydicom gives a lone value unwrapped)."""
    return [value] if isinstance(value, str) else list(value)


def _root_name(model: str) -> str:
    return "patient-root C-FIND" if model == _FIND[QueryRoot.PATIENT] else "study-root C-FIND"
