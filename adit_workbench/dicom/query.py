"""Find patients, studies, series and instances on a node: the query API of the notebook.

``find_studies(pacs, patient_id="1001", study_date=("2020-01-01", None), modality="CT")``
normalises the filters (:mod:`.filters`), picks a route from the node's probed capabilities
(:mod:`.query_plan`), sends one C-FIND (or QIDO-RS search) per modality, merges the
answers without duplicates, filters them again on the client, and returns typed results
(:mod:`.results`). ``iter_*`` twins stream; :func:`run_many` runs a batch with bounded
concurrency.

Limits: each call is capped by ``limit`` and by the node's ``max_search_results``,
whichever is lower. Reaching the cap is never silent: ``Results.truncated`` is set, the
result says so when shown, a ``ResultsTruncated`` warning is issued by the ``iter_*``
twins, and a log line records it (node and count only, never filter values).

Every function takes any object with the node protocol's ``name`` and ``find``; a
``spec`` (:class:`~.spec.ServerSpec`) supplies capabilities and limits when present.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar, cast

from pydicom import Dataset

from ..errors import InputError, WorkbenchError
from .filters import Level, Query, matches, normalize
from .node import Via
from .query_plan import Route, ask_level, choose_route, identifiers
from .results import RESULT_TYPES, Instance, Patient, Results, Series, Study, _Result
from .spec import Capabilities, ServerSpec

__all__ = [
    "FindNode",
    "QueryMixin",
    "ResultStream",
    "ResultsTruncated",
    "find",
    "find_instances",
    "find_patients",
    "find_series",
    "find_studies",
    "iter_instances",
    "iter_patients",
    "iter_series",
    "iter_studies",
    "run_many",
]

log = logging.getLogger(__name__)


T = TypeVar("T", bound=_Result)

#: What can be answered without a ServerSpec (e.g. a folder node): both C-FIND models.
_LOCAL_CAPABILITIES = Capabilities(patient_root_find=True, study_root_find=True)
_FALLBACK_MAX_RESULTS = 1000

_UNIQUE_KEY = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.INSTANCE: "SOPInstanceUID",
}


class FindNode(Protocol):
    """The part of the node protocol queries need (see :class:`.node.Node`)."""

    @property
    def name(self) -> str:
        """The node's registered name."""
        ...

    def find(
        self, level: Any, query: Dataset, *, limit: int | None = None, root: Any = None
    ) -> Iterator[Dataset]:
        """Stream the matches of ``query`` at ``level``."""
        ...


class ResultsTruncated(UserWarning):
    """A query reached its limit: the node has more matches than were returned."""


def _spec(node: FindNode) -> ServerSpec | None:
    spec = getattr(node, "spec", None)
    return spec if isinstance(spec, ServerSpec) else None


def _capabilities(node: FindNode) -> Capabilities:
    spec = _spec(node)
    return spec.capabilities if spec is not None else _LOCAL_CAPABILITIES


def _node_max(node: FindNode) -> int:
    spec = _spec(node)
    if spec is not None:
        return spec.max_search_results
    try:
        from ..config import get_settings

        return get_settings().max_search_results
    except Exception:  # settings unreadable: the query still needs a cap
        return _FALLBACK_MAX_RESULTS


def effective_limit(node: FindNode, limit: int | None) -> int:
    """The cap of one call: ``limit`` or the node's max search results, whichever is lower."""
    node_max = _node_max(node)
    if limit is None:
        return node_max
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError("limit must be a whole number of at least 1")
    return min(limit, node_max)


def _node_find(
    node: FindNode, route: Route, level: Level, identifier: Dataset, limit: int
) -> Iterator[Dataset]:
    """One find on the node by ``route``; the node layer does transport and errors."""
    root = "patient" if route is Route.PATIENT_ROOT else "study"
    if hasattr(node, "dimse") and hasattr(node, "dicomweb"):
        # A server reachable both ways: tell it which side this route is.
        via = "dicomweb" if route is Route.QIDO else "dimse"
        server = cast(Any, node)
        return cast(
            Iterator[Dataset],
            server.find(level.value, identifier, limit=limit, root=root, via=via),
        )
    return node.find(level.value, identifier, limit=limit, root=root)


class ResultStream(Iterator[T], Generic[T]):
    """The streaming answer of an ``iter_*`` call.

    Iterate it like any iterator. ``truncated`` becomes true (and a
    :class:`ResultsTruncated` warning is issued) when the limit cut the answer short;
    it is only final once the stream is exhausted.
    """

    def __init__(self, node: FindNode, query: Query, *, limit: int | None, via: str | Via) -> None:
        self.node_name = node.name
        self.level = query.level
        self.limit = effective_limit(node, limit)
        self.route = choose_route(_capabilities(node), query, via, node=node.name)
        self.truncated = False
        self._via = str(Via.parse(via))
        self._node = node
        self._query = query
        self._studies_of: defaultdict[str, set[str]] = defaultdict(set)
        self._gen = self._run()

    def __next__(self) -> T:
        return next(self._gen)

    def close(self) -> None:
        """Stop early and release the node's resources."""
        self._gen.close()

    def _run(self) -> Generator[T, None, None]:
        query, route, cap = self._query, self.route, self.limit
        asked = ask_level(query, route)
        grouped = query.level is Level.PATIENT and asked is not Level.PATIENT
        # Patients answered at study level come one row per study: let the node send
        # up to its own cap so that `cap` distinct patients can still be found.
        raw_cap = max(cap + 1, _node_max(self._node)) if grouped else cap + 1
        make = cast(Callable[..., T], RESULT_TYPES[query.level].from_dataset)  # type: ignore[attr-defined]
        key_name = _UNIQUE_KEY[query.level]
        seen: set[str] = set()
        produced = 0
        # Study rows standing in for patients also tell how many studies each one has,
        # unless study filters hid some of them.
        count_studies = grouped and ask_level(query, Route.PATIENT_ROOT) is Level.PATIENT
        studies_of = self._studies_of
        for identifier in identifiers(query, route):
            raw = 0
            answers = _node_find(self._node, route, asked, identifier, raw_cap)
            try:
                for ds in answers:
                    raw += 1
                    if not matches(query, ds):
                        continue
                    key = str(ds.get(key_name, "") or "")
                    if count_studies:
                        studies_of[key].add(str(ds.get("StudyInstanceUID", "")))
                    if key:
                        if key in seen:
                            continue
                        seen.add(key)
                    if produced >= cap:
                        self._mark_truncated()
                        return
                    produced += 1
                    yield make(ds, self._node, self._via)
            finally:
                # Stopping early must release the association (or HTTP stream) at once.
                close = getattr(answers, "close", None)
                if close is not None:
                    close()
            if raw >= raw_cap:
                # The node stopped at our cap: more matches may exist behind it.
                self._mark_truncated()
                return

    def _mark_truncated(self) -> None:
        self.truncated = True
        what = self.level.name.lower()
        log.warning("query truncated: %s at %s level, limit %d", self.node_name, what, self.limit)
        warnings.warn(
            ResultsTruncated(
                f"{self.node_name}: {what} query truncated at {self.limit} results; "
                "narrow the filters or raise limit"
            ),
            stacklevel=3,
        )


def iter_results(
    node: FindNode,
    level: str | Level,
    *,
    limit: int | None = None,
    via: str | Via = Via.AUTO,
    **filters: Any,
) -> ResultStream[Any]:
    """Stream results at any level (the ``iter_*`` functions fix the level)."""
    return ResultStream(node, normalize(level, filters), limit=limit, via=via)


def find(
    node: FindNode,
    level: str | Level,
    *,
    limit: int | None = None,
    via: str | Via = Via.AUTO,
    **filters: Any,
) -> Results[Any]:
    """Results at any level, collected (the ``find_*`` functions fix the level)."""
    stream = iter_results(node, level, limit=limit, via=via, **filters)
    with warnings.catch_warnings():
        # A collected result shows its truncation itself (repr, HTML, .truncated).
        warnings.simplefilter("ignore", ResultsTruncated)
        items = list(stream)
    if stream._studies_of and not stream.truncated:
        items = [
            dataclasses.replace(p, study_count=len(stream._studies_of[p.patient_id]))
            if p.study_count is None and p.patient_id in stream._studies_of
            else p
            for p in items
        ]
    return Results(
        items,
        stream.level,
        truncated=stream.truncated,
        limit=stream.limit,
        node_name=stream.node_name,
        route=str(stream.route),
    )


def iter_patients(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> ResultStream[Patient]:
    """Stream patients matching ``filters`` (see :func:`find_patients`)."""
    return iter_results(node, Level.PATIENT, limit=limit, via=via, **filters)


def iter_studies(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> ResultStream[Study]:
    """Stream studies matching ``filters`` (see :func:`find_studies`)."""
    return iter_results(node, Level.STUDY, limit=limit, via=via, **filters)


def iter_series(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> ResultStream[Series]:
    """Stream series matching ``filters`` (see :func:`find_series`)."""
    return iter_results(node, Level.SERIES, limit=limit, via=via, **filters)


def iter_instances(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> ResultStream[Instance]:
    """Stream instances matching ``filters`` (see :func:`find_instances`)."""
    return iter_results(node, Level.INSTANCE, limit=limit, via=via, **filters)


def find_patients(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> Results[Patient]:
    """Patients on ``node`` matching ``filters``.

    Filters: ``patient_id``, ``patient_name`` (wildcards; ``"Last, First"`` accepted),
    ``patient_birth_date``, ``patient_sex``; study filters (``study_date``, ``modality``,
    ``accession_number`` …) narrow the patients to those with such studies. Any DICOM
    keyword is accepted as well. Where the route has no patient level (study root, QIDO)
    the patients are gathered from a study-level query.

    Raises
    ------
    InputError
        An unknown or malformed filter (named, value not echoed).
    NodeError
        The node refused, failed or could not be reached; never an empty result instead.
    """
    return find(node, Level.PATIENT, limit=limit, via=via, **filters)


def find_studies(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> Results[Study]:
    """Studies on ``node`` matching ``filters``.

    Filters: the patient filters plus ``accession_number``, ``study_date`` (a date or a
    ``(from, until)`` pair, either end open), ``study_time``, ``modality`` (one or several:
    one query each, merged), ``study_description``, ``study_uid`` and DICOM keywords.
    Dates accept ``date``, ``datetime``, ``"2020-01-31"`` and ``"20200131"``.
    ``via`` is ``"auto"``, ``"dimse"`` or ``"dicomweb"``. Raises as :func:`find_patients`.
    """
    return find(node, Level.STUDY, limit=limit, via=via, **filters)


def find_series(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> Results[Series]:
    """Series on ``node`` matching ``filters``.

    Filters: study filters plus ``modality``, ``series_description``, ``series_number``
    (one or several), ``series_uid``. Raises as :func:`find_patients`.
    """
    return find(node, Level.SERIES, limit=limit, via=via, **filters)


def find_instances(
    node: FindNode, *, limit: int | None = None, via: str | Via = Via.AUTO, **filters: Any
) -> Results[Instance]:
    """Instances on ``node`` matching ``filters`` (usually ``study_uid`` and ``series_uid``)."""
    return find(node, Level.INSTANCE, limit=limit, via=via, **filters)


def run_many(
    node: FindNode,
    queries: Iterable[Mapping[str, Any]],
    *,
    level: str | Level = Level.STUDY,
    limit: int | None = None,
    via: str | Via = Via.AUTO,
    max_workers: int | None = None,
    return_exceptions: bool = False,
) -> list[Results[Any] | WorkbenchError]:
    """Run many queries on one node, at most ``max_associations`` at a time.

    Each query is a mapping of filters as for :func:`find_studies`. Results come back in
    the order of ``queries``. The node reuses its associations between queries; the pool
    here never exceeds the node's ``max_associations`` (``max_workers`` may only lower it).

    With ``return_exceptions=True`` a failed query yields its :class:`WorkbenchError` in
    its place (a batch job records it per row); otherwise the first failure is raised.
    """
    batch = [dict(q) for q in queries]
    lvl = Level.parse(level)
    spec = _spec(node)
    bound = spec.max_associations if spec is not None else 1
    workers = max(1, min(bound, max_workers or bound, len(batch) or 1))

    def one(filters: dict[str, Any]) -> Results[Any] | WorkbenchError:
        try:
            return find(node, lvl, limit=limit, via=via, **filters)
        except WorkbenchError as exc:
            if return_exceptions:
                return exc
            raise

    if workers == 1:
        return [one(f) for f in batch]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="query") as pool:
        return list(pool.map(one, batch))


class QueryMixin:
    """Adds ``find_*``/``iter_*``/``run_many`` methods to a node class.

    A node implementation adopts it with ``class DicomServer(NodeBase, QueryMixin)``;
    the methods are thin calls into this module's functions with ``self`` as the node.
    """

    def find_patients(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Patient]:
        """See :func:`adit_workbench.dicom.query.find_patients`."""
        return find_patients(cast(FindNode, self), limit=limit, via=via, **filters)

    def find_studies(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Study]:
        """See :func:`adit_workbench.dicom.query.find_studies`."""
        return find_studies(cast(FindNode, self), limit=limit, via=via, **filters)

    def find_series(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Series]:
        """See :func:`adit_workbench.dicom.query.find_series`."""
        return find_series(cast(FindNode, self), limit=limit, via=via, **filters)

    def find_instances(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Instance]:
        """See :func:`adit_workbench.dicom.query.find_instances`."""
        return find_instances(cast(FindNode, self), limit=limit, via=via, **filters)

    def iter_patients(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> ResultStream[Patient]:
        """See :func:`adit_workbench.dicom.query.iter_patients`."""
        return iter_patients(cast(FindNode, self), limit=limit, via=via, **filters)

    def iter_studies(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> ResultStream[Study]:
        """See :func:`adit_workbench.dicom.query.iter_studies`."""
        return iter_studies(cast(FindNode, self), limit=limit, via=via, **filters)

    def iter_series(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> ResultStream[Series]:
        """See :func:`adit_workbench.dicom.query.iter_series`."""
        return iter_series(cast(FindNode, self), limit=limit, via=via, **filters)

    def iter_instances(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> ResultStream[Instance]:
        """See :func:`adit_workbench.dicom.query.iter_instances`."""
        return iter_instances(cast(FindNode, self), limit=limit, via=via, **filters)

    def run_many(
        self,
        queries: Iterable[Mapping[str, Any]],
        *,
        level: str = "study",
        limit: int | None = None,
        via: str = "auto",
        max_workers: int | None = None,
        return_exceptions: bool = False,
    ) -> list[Results[Any] | WorkbenchError]:
        """See :func:`adit_workbench.dicom.query.run_many`."""
        return run_many(
            cast(FindNode, self),
            queries,
            level=level,
            limit=limit,
            via=via,
            max_workers=max_workers,
            return_exceptions=return_exceptions,
        )
