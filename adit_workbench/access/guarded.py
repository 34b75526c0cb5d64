"""Live nodes that check access and audit every call: what ``Workbench.node()`` hands out.

A live node from the DICOM layer knows nothing about users. :class:`GuardedNode` has
every public method of the live node classes (:class:`~adit_workbench.dicom.server.DicomServer`
and :class:`~adit_workbench.dicom.folder.FolderNode`) written out, with their parameters and
docstrings, so that completion, ``help()`` and Shift-Tab work in a notebook. Each method
checks first and audits what was asked (level, filters, count): queries and retrievals
need the node's ``source`` role, stores its ``destination`` role, probing the ``admin``
permission, echo any role. A method the live node gains later is simply absent here until
it is written out (``tests/access/test_guarded.py`` fails until then): there is no
forwarding that could skip the check.

Query results point back at the guarded node, not the live one, so that
``study.series()`` is checked and audited like any other query.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydicom import Dataset

from ..dicom.results import Instance, Patient, Results, Series, Study
from ..dicom.spec import Capabilities, FolderSpec, ServerSpec
from .control import Access
from .permissions import NodeRole, Permission

if TYPE_CHECKING:
    from ..config import Settings
    from ..deid.pseudonymizer import Pseudonymizer
    from ..dicom.filters import Level
    from ..dicom.folder import FolderNode
    from ..dicom.node import Node, QueryLevel, QueryRoot, Via
    from ..dicom.query import ResultStream
    from ..dicom.server import DicomServer
    from ..dicom.storage import StoreResult
    from ..errors import WorkbenchError

    LiveNode = DicomServer | FolderNode

__all__ = ["GuardedNode", "GuardedStream"]

T = TypeVar("T")


def _describe(level: object = None, query: Dataset | None = None, **kwargs: Any) -> dict[str, Any]:
    """What a call asked for, for the audit row (values may identify: database only)."""
    details: dict[str, Any] = {}
    if query is not None:
        details["keys"] = {
            e.keyword or str(e.tag): str(e.value) for e in query if e.value not in (None, "", b"")
        }
    if level is not None:
        details["level"] = str(level)
    filters = kwargs.pop("filters", None)
    if filters:
        details["filters"] = dict(filters)
    for key, value in kwargs.items():
        if value is not None and not (key == "via" and str(value) == "auto"):
            details[key] = value if isinstance(value, int | str) else str(value)
    return details


def _via(via: Via | str | None) -> dict[str, Any]:
    """``via`` as a keyword argument, only when one was given (folders take none)."""
    return {} if via is None else {"via": via}


def _rebind(item: T, node: GuardedNode) -> T:
    """A query result that navigates through the guarded node (anything else unchanged)."""
    if isinstance(item, Patient | Study | Series | Instance):
        return dataclasses.replace(item, node=node)
    return item


class GuardedStream(Iterator[T], Generic[T]):
    """The streaming answer of a guarded ``iter_*`` call (see ``ResultStream``).

    Items navigate through the guarded node; ``truncated`` is final once exhausted.
    """

    def __init__(self, stream: ResultStream[Any] | Iterator[T], node: GuardedNode) -> None:
        self._stream = stream
        self._owner = node

    def __next__(self) -> T:
        return _rebind(next(self._stream), self._owner)

    @property
    def truncated(self) -> bool:
        """True when the limit cut the answer short."""
        return bool(getattr(self._stream, "truncated", False))

    @property
    def level(self) -> Level | None:
        """The level of every item."""
        return getattr(self._stream, "level", None)

    @property
    def limit(self) -> int | None:
        """The cap that applies to this stream."""
        return getattr(self._stream, "limit", None)

    @property
    def route(self) -> Any:
        """How the node answers (C-FIND root or QIDO), as the live stream says."""
        return getattr(self._stream, "route", None)

    def close(self) -> None:
        """Stop early and release the node's resources."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"<GuardedStream on {self._owner.name}>"


class GuardedNode:
    """A live node seen through one user's access. ``Workbench.node(name)`` returns one.

    Every method checks this user's role on the node (or the admin permission) before it
    reaches the node, and leaves an audit row: ``ok``, ``failed`` or ``denied``.
    """

    def __init__(self, node: Node, access: Access, settings: Settings | None = None) -> None:
        # open_node() makes one of the two live classes; the checks below rely on their API.
        self._node = cast("LiveNode", node)
        self._access = access
        self._settings = settings

    # -- description (no I/O, no check) ---------------------------------------------
    @property
    def name(self) -> str:
        """The node's registered name."""
        return str(self._node.name)

    @property
    def spec(self) -> ServerSpec | FolderSpec:
        """The node's stored description (the DICOMweb credential stays out of its repr)."""
        return self._node.spec

    @property
    def capabilities(self) -> Capabilities:
        """What the node supports, as typed by an admin or measured by a probe."""
        capabilities = getattr(self._node, "capabilities", None)
        if isinstance(capabilities, Capabilities):
            return capabilities
        return Capabilities(patient_root_find=True, study_root_find=True, store=True)

    def __repr__(self) -> str:
        return f"<node {self.name} ({type(self._node).__name__}) for {self._access.user}>"

    def _repr_html_(self) -> str:
        from html import escape

        flags = [k for k, v in self.capabilities.as_flags().items() if v]
        return (
            f"<div><b>{escape(self.name)}</b> "
            f"<span style='color:#555'>{escape(type(self._node).__name__)} for "
            f"{escape(self._access.user)}; supports {escape(', '.join(flags) or 'nothing')}"
            "</span></div>"
        )

    def __enter__(self) -> GuardedNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the node's connections (idempotent)."""
        self._node.close()

    # -- checks and audit -------------------------------------------------------------
    def _run(
        self,
        action: str,
        role: NodeRole | Permission | None,
        details: Mapping[str, Any],
        call: Callable[[], T],
        *,
        count: Callable[[T, dict[str, Any]], None] | None = None,
    ) -> T:
        """Check, then run ``call`` under an audit row that records what came back."""
        described = dict(details)
        if isinstance(role, Permission):
            self._access.require(role, action=action, node=self.name, details=described)
        else:
            self._access.require_node(self.name, role, action=action, details=described)
        with self._access.audited(action, node=self.name, details=described) as audit:
            result = call()
            if count is not None:
                count(result, audit)
            elif hasattr(result, "__len__") and not isinstance(result, str):
                audit["count"] = len(result)
            elif result is not None:
                audit["streamed"] = True
            return result

    def _results(self, results: Results[Any]) -> Results[Any]:
        if isinstance(results, Results):
            return results.with_node(self)
        return results

    # -- node protocol ------------------------------------------------------------------
    def echo(self, *, via: Via | str | None = None) -> None:
        """Check that the node answers: C-ECHO (or a one-study QIDO search, or, for a
        folder, that it exists and is writable). Any role on the node suffices.

        Raises a :class:`~adit_workbench.errors.NodeError` naming what failed.
        """
        self._run(
            "node.echo",
            None,
            _describe(via=via),
            lambda: self._node.echo(**_via(via)),
        )

    def probe(self) -> Capabilities:
        """Measure which services the node really supports (admins only).

        The result is returned, not stored: ``wb.probe(name)`` stores it.
        """
        return self._run("node.probe", Permission.ADMIN, {}, self._node.probe, count=_nothing)

    def find(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        limit: int | None = None,
        root: QueryRoot | str | None = None,
        via: Via | str | None = None,
    ) -> Iterator[Dataset]:
        """Stream the raw matches of ``query`` at ``level`` (at most ``limit``); needs the
        source role.

        ``query`` holds matching keys (with values) and return keys (empty). Prefer
        :meth:`find_studies` and its siblings, which take filters and return typed results.
        """
        details = {"method": "find", **_describe(level, query, limit=limit, root=root, via=via)}
        return self._run(
            "query",
            NodeRole.SOURCE,
            details,
            lambda: self._node.find(level, query, limit=limit, root=root, **_via(via)),
        )

    def retrieve(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        root: QueryRoot | str | None = None,
        via: Via | str | None = None,
    ) -> Iterator[Dataset]:
        """Stream the instances of the patient, study, series or instance in ``query``
        (C-GET, WADO-RS or a folder's files); needs the source role.

        ``series.datasets()`` and ``instance.dataset()`` are the easier way in.
        """
        details = {"method": "retrieve", **_describe(level, query, root=root, via=via)}
        return self._run(
            "retrieve",
            NodeRole.SOURCE,
            details,
            lambda: self._node.retrieve(level, query, root=root, **_via(via)),
        )

    def store(
        self,
        items: Iterable[Dataset | str | os.PathLike[str]],
        *,
        via: Via | str | None = None,
    ) -> StoreResult:
        """Send datasets or Part-10 files to the node (C-STORE, STOW-RS or into the
        folder); needs the destination role. Refused instances are reported in the
        result, not raised."""
        sent = 0

        def counted() -> Iterator[Dataset | str | os.PathLike[str]]:
            # Counted as the node consumes them: a stream of datasets stays a stream.
            nonlocal sent
            for item in items:
                sent += 1
                yield item

        def count(result: Any, audit: dict[str, Any]) -> None:
            audit["items"] = sent

        return self._run(
            "store",
            NodeRole.DESTINATION,
            {"method": "store", **_describe(via=via)},
            lambda: self._node.store(counted(), **_via(via)),
            count=count,
        )

    # -- typed queries --------------------------------------------------------------------
    def _query(self, method: str, limit: int | None, via: str, filters: dict[str, Any]) -> Any:
        target = getattr(self._node, method)
        details = {"method": method, **_describe(filters=filters, limit=limit, via=via)}
        if method.startswith("iter_"):
            return self._run(
                "query",
                NodeRole.SOURCE,
                details,
                lambda: GuardedStream(target(limit=limit, via=via, **filters), self),
                count=_streamed,
            )
        return self._run(
            "query",
            NodeRole.SOURCE,
            details,
            lambda: self._results(target(limit=limit, via=via, **filters)),
        )

    def find_patients(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Patient]:
        """Patients matching ``filters``: ``patient_id``, ``patient_name`` (wildcards;
        ``"Last, First"`` accepted), ``patient_birth_date``, ``patient_sex``, and study
        filters (``study_date``, ``modality`` …) that narrow them to patients with such
        studies. Needs the source role.

        Raises ``InputError`` for an unknown or malformed filter and a ``NodeError`` when
        the node fails (never an empty result instead).
        """
        return self._query("find_patients", limit, via, filters)

    def find_studies(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Study]:
        """Studies matching ``filters``; needs the source role.

        Filters: ``patient_id``, ``patient_name``, ``patient_birth_date``,
        ``accession_number``, ``study_date`` (a date or a ``(from, until)`` pair, either
        end open), ``study_time``, ``modality`` (one or several), ``study_description``,
        ``study_uid`` and DICOM keywords. ``via`` is ``"auto"``, ``"dimse"`` or
        ``"dicomweb"``. At most ``limit`` results (and the node's cap): a cut-short
        result says so (``.truncated``).
        """
        return self._query("find_studies", limit, via, filters)

    def find_series(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Series]:
        """Series matching ``filters`` (study filters plus ``modality``,
        ``series_description``, ``series_number``, ``series_uid``); needs the source role."""
        return self._query("find_series", limit, via, filters)

    def find_instances(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Instance]:
        """Instances matching ``filters`` (usually ``study_uid`` and ``series_uid``);
        needs the source role."""
        return self._query("find_instances", limit, via, filters)

    def iter_patients(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> GuardedStream[Patient]:
        """Stream patients matching ``filters`` (see :meth:`find_patients`)."""
        return self._query("iter_patients", limit, via, filters)

    def iter_studies(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> GuardedStream[Study]:
        """Stream studies matching ``filters`` (see :meth:`find_studies`)."""
        return self._query("iter_studies", limit, via, filters)

    def iter_series(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> GuardedStream[Series]:
        """Stream series matching ``filters`` (see :meth:`find_series`)."""
        return self._query("iter_series", limit, via, filters)

    def iter_instances(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> GuardedStream[Instance]:
        """Stream instances matching ``filters`` (see :meth:`find_instances`)."""
        return self._query("iter_instances", limit, via, filters)

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
        """Run many queries (mappings of filters) on this node, at most its
        ``max_associations`` at a time; results in the order of ``queries``. Needs the
        source role. With ``return_exceptions=True`` a failed query yields its error in
        its place instead of raising."""
        batch = [dict(q) for q in queries]
        details = {"method": "run_many", "queries": len(batch),
                   **_describe(level, limit=limit, via=via)}  # fmt: skip
        answers = self._run(
            "query",
            NodeRole.SOURCE,
            details,
            lambda: self._node.run_many(
                batch,
                level=level,
                limit=limit,
                via=via,
                max_workers=max_workers,
                return_exceptions=return_exceptions,
            ),
        )
        return [self._results(a) if isinstance(a, Results) else a for a in answers]

    def pseudonymizer(
        self, *, pseudonym: str | None = None, project: str | None = None
    ) -> Pseudonymizer:
        """The pseudonymizer a transfer job of ``project`` would apply (what
        ``series.datasets(pseudonym=…)`` uses). It holds the project's key, so it needs
        the source role here, as fetching the originals does; nothing is contacted."""
        from ..deid.project import project_pseudonymizer

        settings = self._settings or getattr(self._node, "settings", None)
        if settings is None:
            from ..config import get_settings

            settings = get_settings()
        return self._run(
            "deid.pseudonymizer",
            NodeRole.SOURCE,
            {"project": project or "default"},
            lambda: project_pseudonymizer(settings, project=project, pseudonym=pseudonym),
            count=_nothing,
        )

    def unguarded(self, role: NodeRole | str) -> Node:
        """The live node behind this one, for the transfer pipeline, which drives the
        node's protocols itself (C-GET workers, the C-MOVE receiver, folder paths).

        Checks this user's ``role`` (``"source"`` or ``"destination"``) now and audits the
        hand-out; calls on the returned node are not checked again, so it is meant for
        one operation, not to be kept.
        """
        wanted = NodeRole(str(role).lower())
        return self._run(
            "node.open",
            wanted,
            {"role": wanted.value},
            lambda: cast("Node", self._node),
            count=_nothing,
        )

    def with_capabilities(self, capabilities: Capabilities) -> GuardedNode:
        """This node as if it had ``capabilities`` (e.g. just probed), still guarded.

        Only servers have capabilities to replace; nothing is contacted or stored.
        """
        replace = getattr(self._node, "with_capabilities", None)
        if replace is None:
            from ..errors import InputError

            raise InputError(f"{self.name} is a folder: it has no capabilities to replace")
        return GuardedNode(replace(capabilities), self._access, self._settings)


def _nothing(result: object, audit: dict[str, Any]) -> None:
    """Record nothing about a result (it is not a count)."""


def _streamed(result: object, audit: dict[str, Any]) -> None:
    audit["streamed"] = True
