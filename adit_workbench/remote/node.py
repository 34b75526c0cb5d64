"""A node seen through the service: the typed query methods of a local node, over HTTP.

``find_studies`` and its siblings send the filters to ``/api/nodes/{name}/query``, where the
service runs the facade's own ``find_studies`` on the caller's guarded node; the answer's
identifiers become the same :class:`~adit_workbench.dicom.results.Study` (…) objects a
local node returns. They remember this remote node, so ``hits[0].series()`` navigates
through :meth:`RemoteNode.find` (one raw find on the service) with the query code of
:mod:`adit_workbench.dicom.query`, unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydicom import Dataset
from pydicom.dataelem import DataElement

from ..dicom.filters import Level
from ..dicom.results import Instance, Patient, Results, Series, Study, _Result
from ..dicom.spec import Capabilities, ServerSpec
from ..errors import InputError, WorkbenchError
from .results import REMOTE_TYPES
from .stream import retrieve_stream

if TYPE_CHECKING:
    from .client import ServiceClient

__all__ = ["RemoteNode", "RemoteResultStream", "dataset_from_json", "encode_filters"]

_LEVEL_NAMES = {Level.PATIENT: "patient", Level.STUDY: "study", Level.SERIES: "series",
                Level.INSTANCE: "instance"}  # fmt: skip


def _encode(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [_encode(name, v) for v in value]
    raise InputError(f"filter {name!r}: a {type(value).__name__} cannot be sent to the service")


def encode_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    """Filters as JSON values (dates as ISO text, pairs as lists)."""
    return {name: _encode(name, value) for name, value in filters.items()}


#: Value representations whose DICOM JSON value is the text itself (as in
#: :data:`adit_workbench.web.nodes.TEXT_VRS`, which the client does not import).
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI",
                       "UR", "UT"})  # fmt: skip


def dataset_from_json(data: Mapping[str, Any]) -> Dataset:
    """``Dataset.from_json(data)``, the same dataset, with text elements read directly.

    pydicom's decoder costs about 0.4 ms per element (value checks meant for any JSON);
    an answer of the service is mostly text elements, which become the same
    :class:`DataElement` here. Every other element (names, numbers, sequences, binary,
    empty values) goes through ``Dataset.from_json``.
    """
    ds = Dataset()
    rest: dict[str, Any] = {}
    for key, entry in data.items():
        values = entry.get("Value") if isinstance(entry, dict) else None
        vr = entry.get("vr") if isinstance(entry, dict) else None
        if (vr in _TEXT_VRS and len(entry) == 2 and isinstance(values, list) and values
                and all(isinstance(v, str) for v in values)):  # fmt: skip
            try:
                tag = int(key, 16)
            except ValueError:
                rest[key] = entry
                continue
            ds.add(DataElement(tag, vr, values[0] if len(values) == 1 else values))
        else:
            rest[key] = entry
    if rest:
        for element in Dataset.from_json(rest).elements():
            ds.add(element)  # type: ignore[arg-type]
    return ds


def spec_from(info: Mapping[str, Any]) -> ServerSpec | None:
    """A credential-free :class:`ServerSpec` from the service's node description."""
    if info.get("kind") != "server":
        return None
    flags = info.get("capabilities") or {}
    caps = Capabilities(**{k: bool(flags[k]) for k in Capabilities.FLAGS if k in flags})  # type: ignore[arg-type]
    return ServerSpec(
        name=str(info["name"]),
        ae_title=str(info.get("ae_title", "")),
        host=str(info.get("host", "")),
        port=int(info.get("port") or 0),
        capabilities=caps,
        dicomweb_root_url="(via the workbench service)" if info.get("dicomweb") else None,
        max_search_results=int(info.get("max_search_results") or 1000),
        max_associations=int(info.get("max_associations") or 2),
    )


class RemoteResultStream(Iterator[Any]):
    """The streaming answer of ``iter_*``: iterate; ``truncated`` is final once exhausted."""

    def __init__(self, node: RemoteNode, level: Level, lines: Iterator[dict[str, Any]], via: str):
        self.node_name = node.name
        self.level = level
        self.truncated = False
        self.limit: int | None = None
        self.route = ""
        self._node = node
        self._lines = lines
        self._via = via
        self._make = REMOTE_TYPES[level].from_dataset

    def __next__(self) -> Any:
        for line in self._lines:
            if line.get("end"):
                self.truncated = bool(line.get("truncated"))
                self.limit = line.get("limit")
                self.route = str(line.get("route", ""))
                break
            return self._make(dataset_from_json(line["identifier"]), self._node, self._via)
        raise StopIteration

    def close(self) -> None:
        """Stop early (the HTTP answer is closed)."""
        close = getattr(self._lines, "close", None)
        if close is not None:
            close()


class RemoteNode:
    """A node of the service; create it with ``RemoteWorkbench.node(name)``."""

    def __init__(self, client: ServiceClient, info: Mapping[str, Any]) -> None:
        self._client = client
        self.info = dict(info)
        self.spec = spec_from(info)

    @property
    def name(self) -> str:
        """The node's registered name."""
        return str(self.info["name"])

    @property
    def capabilities(self) -> Capabilities | None:
        """What the node supports (servers), as registered or probed."""
        return self.spec.capabilities if self.spec is not None else None

    def __repr__(self) -> str:
        return f"<RemoteNode {self.name} ({self.info.get('kind')}) via {self._client.base_url}>"

    def _repr_html_(self) -> str:
        from html import escape

        caps = self.capabilities
        flags = [k for k, v in caps.as_flags().items() if v] if caps is not None else []
        return (
            f"<div><b>{escape(self.name)}</b> <span style='color:#555'>"
            f"{escape(str(self.info.get('kind', '')))} via {escape(self._client.base_url)}; "
            f"supports {escape(', '.join(flags) or 'folder operations')}</span></div>"
        )

    def __enter__(self) -> RemoteNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: the service holds the node's connections."""

    @property
    def _path(self) -> str:
        return f"api/nodes/{quote(self.name, safe='')}"

    def echo(self) -> None:
        """C-ECHO on the service's side; raises the node's error."""
        self._client.post(f"{self._path}/echo", retry=True)

    def probe(self) -> Capabilities:
        """Measure (and store) what the node supports (admins)."""
        flags = self._client.post(f"{self._path}/probe")
        probed = flags.get("probed_at")
        return Capabilities(
            **{k: bool(flags[k]) for k in Capabilities.FLAGS if k in flags},
            probed_at=datetime.fromisoformat(probed) if probed else None,
            details=dict(flags.get("details") or {}),
        )

    # -- queries ------------------------------------------------------------------------
    def _query(self, level: Level, limit: int | None, via: str, filters: Mapping[str, Any]) -> Any:
        body = {"level": _LEVEL_NAMES[level], "filters": encode_filters(filters),
                "limit": limit, "via": str(via)}  # fmt: skip
        answer = self._client.post(f"{self._path}/query", body, retry=True)
        make = REMOTE_TYPES[level].from_dataset
        items: list[_Result] = [
            make(dataset_from_json(i["identifier"]), self, str(via)) for i in answer["items"]
        ]
        return Results(items, level, truncated=bool(answer["truncated"]), limit=answer["limit"],
                       node_name=self.name, route=str(answer.get("route", "")))  # fmt: skip

    def _stream(
        self, level: Level, limit: int | None, via: str, filters: Mapping[str, Any]
    ) -> RemoteResultStream:
        body = {"level": _LEVEL_NAMES[level], "filters": encode_filters(filters),
                "limit": limit, "via": str(via), "stream": True}  # fmt: skip
        lines = self._client.ndjson(f"{self._path}/query", body)
        return RemoteResultStream(self, level, lines, str(via))

    def find_patients(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Patient]:
        """See :func:`adit_workbench.dicom.query.find_patients`."""
        return self._query(Level.PATIENT, limit, via, filters)

    def find_studies(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Study]:
        """See :func:`adit_workbench.dicom.query.find_studies`."""
        return self._query(Level.STUDY, limit, via, filters)

    def find_series(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Series]:
        """See :func:`adit_workbench.dicom.query.find_series`."""
        return self._query(Level.SERIES, limit, via, filters)

    def find_instances(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> Results[Instance]:
        """See :func:`adit_workbench.dicom.query.find_instances`."""
        return self._query(Level.INSTANCE, limit, via, filters)

    def iter_patients(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> RemoteResultStream:
        """See :func:`adit_workbench.dicom.query.iter_patients`."""
        return self._stream(Level.PATIENT, limit, via, filters)

    def iter_studies(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> RemoteResultStream:
        """See :func:`adit_workbench.dicom.query.iter_studies`."""
        return self._stream(Level.STUDY, limit, via, filters)

    def iter_series(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> RemoteResultStream:
        """See :func:`adit_workbench.dicom.query.iter_series`."""
        return self._stream(Level.SERIES, limit, via, filters)

    def iter_instances(
        self, *, limit: int | None = None, via: str = "auto", **filters: Any
    ) -> RemoteResultStream:
        """See :func:`adit_workbench.dicom.query.iter_instances`."""
        return self._stream(Level.INSTANCE, limit, via, filters)

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
        """Many queries, in order (the service bounds the associations to the node)."""
        lvl = Level.parse(level)
        out: list[Results[Any] | WorkbenchError] = []
        for filters in queries:
            try:
                out.append(self._query(lvl, limit, via, dict(filters)))
            except WorkbenchError as exc:
                if not return_exceptions:
                    raise
                out.append(exc)
        return out

    def find(
        self, level: Any, query: Dataset, *, limit: int | None = None, root: Any = None
    ) -> Iterator[Dataset]:
        """One raw find on the service (the node protocol's ``find``; used by navigation)."""
        body = {
            "level": str(getattr(level, "value", level)).upper(),
            "identifier": query.to_json_dict(),
            "limit": limit,
            "root": str(getattr(root, "value", root)) if root is not None else None,
        }
        for line in self._client.ndjson(f"{self._path}/find", body):
            if line.get("end"):
                return
            yield dataset_from_json(line["identifier"])

    # -- instances --------------------------------------------------------------------
    def retrieve(
        self,
        level: Any,
        query: Dataset,
        *,
        root: Any = None,
        via: str | None = None,
        pseudonym: str | None = None,
        project: str | None = None,
    ) -> Iterator[Dataset]:
        """Stream the instances of the study, series or instance in ``query`` from the
        service, pseudonymized there when ``pseudonym`` or ``project`` is given (see
        :mod:`adit_workbench.web.instances`); ``series.datasets()`` is the easier way in.

        The request is sent now, so a refusal (no source role, originals without the
        permission, an unknown study) raises here; the instances are read as they are
        iterated, one in memory at a time.
        """
        return retrieve_stream(
            self._client, self.name, self._path, query, via=via, pseudonym=pseudonym,
            project=project,
        )  # fmt: skip
