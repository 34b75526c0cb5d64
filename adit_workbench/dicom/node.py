"""The node protocol: what every DICOM node (DIMSE server, DICOMweb server, folder) offers.

Modelled on dicomweb-client's client protocol: one small interface, several
implementations, behaviour tests parametrized over all of them. The query layer builds
on :meth:`Node.find`; the transfer layer will add retrieve and store streams
(``retrieve`` over C-GET, C-MOVE through the receiver or WADO-RS; ``store`` over
C-STORE or STOW-RS) as further methods on the same classes, with a protocol of their own
so that a node that cannot retrieve is rejected by the type checker, not at run time.

Failure is always an exception from :mod:`adit_workbench.errors`, never an empty result:
an empty iterator from ``find`` means the node answered "no matches".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from pydicom import Dataset

from ..errors import InputError
from .spec import Capabilities, FolderSpec, ServerSpec

if TYPE_CHECKING:
    from ..config import Settings
    from .storage import StoreResult

__all__ = [
    "LEVEL_KEYS",
    "Node",
    "NodeBase",
    "QueryLevel",
    "QueryRoot",
    "RetrieveNode",
    "StoreNode",
    "Via",
    "default_root",
    "open_node",
]


class QueryLevel(StrEnum):
    """Query/Retrieve level (the DIMSE spelling; DICOMweb maps it to its resources)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"
    #: The name users know (DICOMweb's "instances"); an alias of IMAGE.
    INSTANCE = "IMAGE"

    @property
    def depth(self) -> int:
        """0 for patient … 3 for instance, so levels can be compared."""
        return _LEVEL_DEPTH[self]

    @classmethod
    def parse(cls, value: QueryLevel | str) -> QueryLevel:
        """Accept an enum or a case-insensitive name (``"instance"`` means IMAGE)."""
        if isinstance(value, QueryLevel):
            return value
        text = str(value).strip().upper()
        text = _LEVEL_ALIASES.get(text, text)
        try:
            return cls(text)
        except ValueError:
            raise InputError(
                f"unknown query level {value!r}: use PATIENT, STUDY, SERIES or IMAGE"
            ) from None


_LEVEL_DEPTH = {
    QueryLevel.PATIENT: 0,
    QueryLevel.STUDY: 1,
    QueryLevel.SERIES: 2,
    QueryLevel.IMAGE: 3,
}

_LEVEL_ALIASES = {
    "PATIENTS": "PATIENT",
    "STUDIES": "STUDY",
    "INSTANCE": "IMAGE",
    "INSTANCES": "IMAGE",
    "IMAGES": "IMAGE",
}


class Via(StrEnum):
    """Which protocol family a call uses; ``auto`` lets the node's capabilities decide."""

    AUTO = "auto"
    DIMSE = "dimse"
    DICOMWEB = "dicomweb"

    @classmethod
    def parse(cls, value: Via | str | None) -> Via:
        """Accept an enum, a case-insensitive name, or None (meaning auto)."""
        if value is None:
            return cls.AUTO
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise InputError(f"unknown via {value!r}: use auto, dimse or dicomweb") from None


class QueryRoot(StrEnum):
    """Query/Retrieve information model."""

    PATIENT = "patient"
    STUDY = "study"

    @classmethod
    def parse(cls, value: QueryRoot | str) -> QueryRoot:
        """Accept an enum or ``"patient"``/``"study"`` (any case, optional ``-root``)."""
        if isinstance(value, QueryRoot):
            return value
        text = str(value).strip().lower().removesuffix("-root").removesuffix("_root")
        try:
            return cls(text)
        except ValueError:
            raise InputError(f"unknown query root {value!r}: use 'patient' or 'study'") from None


#: The unique key of each level (what identifies one result).
LEVEL_KEYS: dict[QueryLevel, str] = {
    QueryLevel.PATIENT: "PatientID",
    QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID",
    QueryLevel.IMAGE: "SOPInstanceUID",
}


def default_root(level: QueryLevel, root: QueryRoot | str | None) -> QueryRoot:
    """Study root unless told, except PATIENT level, which only patient root has."""
    if root is not None:
        chosen = QueryRoot.parse(root)
        if chosen is QueryRoot.STUDY and level is QueryLevel.PATIENT:
            raise InputError("PATIENT level needs the patient root information model")
        return chosen
    return QueryRoot.PATIENT if level is QueryLevel.PATIENT else QueryRoot.STUDY


@runtime_checkable
class Node(Protocol):
    """What every node offers. Implementations: DIMSE, DICOMweb, composite server, folder."""

    @property
    def name(self) -> str:
        """The node's name as registered in the workbench (used in every error)."""
        ...

    def echo(self) -> None:
        """Check that the node answers; raise a :class:`~adit_workbench.errors.NodeError`."""
        ...

    def probe(self) -> Capabilities:
        """Measure which services the node really supports."""
        ...

    def find(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        limit: int | None = None,
        root: QueryRoot | str | None = None,
    ) -> Iterator[Dataset]:
        """Stream the matches of ``query`` at ``level`` (at most ``limit``).

        ``query`` holds matching keys (with values) and return keys (empty). The
        iterator raises on failure; stopping early releases server resources.
        """
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


@runtime_checkable
class RetrieveNode(Node, Protocol):
    """A node instances can be fetched from (C-GET, WADO-RS, folder)."""

    def retrieve(
        self, level: QueryLevel | str, query: Dataset, *, root: QueryRoot | str | None = None
    ) -> Iterator[Dataset]:
        """Stream the instances of the patient, study, series or instance in ``query``."""
        ...


@runtime_checkable
class StoreNode(Node, Protocol):
    """A node instances can be sent to (C-STORE, STOW-RS, folder)."""

    def store(self, items: Iterable[Dataset | str | os.PathLike[str]]) -> StoreResult:
        """Send datasets or Part-10 files; refused instances are reported, not raised."""
        ...


class NodeBase:
    """Shared plumbing: a name, context-manager support and ``repr``."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        """The node's name as registered in the workbench."""
        return self._name

    def close(self) -> None:
        """Release connections (idempotent); nothing to release by default."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r})"


def open_node(spec: ServerSpec | FolderSpec, settings: Settings | None = None) -> Node:
    """The live node for a spec: a :class:`~.server.DicomServer` or a :class:`~.folder.FolderNode`.

    A server spec with both a DIMSE address and a DICOMweb root gives one node that uses
    both (see :class:`~.server.DicomServer`).
    """
    # Imported here: the implementations import this module for the protocol's types.
    if settings is None:
        from ..config import get_settings

        settings = get_settings()
    if isinstance(spec, FolderSpec):
        from .folder import FolderNode

        return FolderNode(spec, settings)
    if isinstance(spec, ServerSpec):
        from .server import DicomServer

        return DicomServer(spec, settings)
    raise InputError(f"cannot open a node from {type(spec).__name__}")
