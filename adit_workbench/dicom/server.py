"""One DICOM server that may be reached both over DIMSE and over DICOMweb.

A PACS is one thing to the user even when the admin configured an AE title *and* a
DICOMweb root for it. :class:`DicomServer` holds a :class:`~.dimse.DimseNode` and/or a
:class:`~.dicomweb.DicomWebNode` and routes each call to one of them: explicitly with
``via=``, or by the spec's capabilities (as typed or probed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydicom import Dataset

from ..errors import InputError, NotSupported
from .dicomweb import DicomWebNode
from .dimse import DimseNode
from .node import NodeBase, QueryLevel, QueryRoot, Via, default_root
from .query import QueryMixin
from .spec import Capabilities, ServerSpec
from .storage import StoreItem, StoreResult

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["DicomServer", "Via"]


def has_dimse(spec: ServerSpec) -> bool:
    """Whether the spec names a DIMSE peer (AE title, host and port)."""
    return bool(spec.ae_title and spec.host and spec.port > 0)


class DicomServer(NodeBase, QueryMixin):
    """A server node over DIMSE, DICOMweb or both.

    Attributes
    ----------
    dimse:
        The DIMSE side, or None when the spec has no AE title/host/port.
    dicomweb:
        The DICOMweb side, or None when the spec has no DICOMweb root URL.
    """

    def __init__(self, spec: ServerSpec, settings: Settings) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.settings = settings
        self.dimse: DimseNode | None = DimseNode(spec, settings) if has_dimse(spec) else None
        self.dicomweb: DicomWebNode | None = (
            DicomWebNode(spec, settings) if spec.dicomweb_root_url else None
        )
        if self.dimse is None and self.dicomweb is None:
            raise InputError(f"{spec.name}: neither a DIMSE address nor a DICOMweb root")

    @property
    def capabilities(self) -> Capabilities:
        """The spec's capabilities (typed by an admin or stored from a probe)."""
        return self.spec.capabilities

    def close(self) -> None:
        """Release associations and HTTP connections."""
        for side in (self.dimse, self.dicomweb):
            if side is not None:
                side.close()

    def _side(self, via: Via | str | None, *, prefer_dimse: bool) -> DimseNode | DicomWebNode:
        chosen = Via.parse(via)
        if chosen is not Via.AUTO:
            side = self.dimse if chosen is Via.DIMSE else self.dicomweb
            if side is None:
                raise NotSupported(self.name, chosen.value, f"no {chosen.value} configured")
            return side
        if self.dimse is not None and (prefer_dimse or self.dicomweb is None):
            return self.dimse
        assert self.dicomweb is not None
        return self.dicomweb

    def echo(self, *, via: Via | str | None = None) -> None:
        """C-ECHO when DIMSE is configured, else a one-study QIDO search."""
        self._side(via, prefer_dimse=True).echo()

    def find(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        limit: int | None = None,
        root: QueryRoot | str | None = None,
        via: Via | str | None = None,
    ) -> Iterator[Dataset]:
        """C-FIND or QIDO-RS; without ``via``, DIMSE if its find is supported, else QIDO."""
        level = QueryLevel.parse(level)
        caps = self.capabilities
        dimse_find = (
            caps.patient_root_find
            if default_root(level, root) is QueryRoot.PATIENT
            else caps.study_root_find
        )
        prefer_dimse = dimse_find or not caps.qido
        return self._side(via, prefer_dimse=prefer_dimse).find(level, query, limit=limit, root=root)

    def retrieve(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        root: QueryRoot | str | None = None,
        via: Via | str | None = None,
    ) -> Iterator[Dataset]:
        """C-GET or WADO-RS; without ``via``, C-GET if supported, else WADO-RS."""
        level = QueryLevel.parse(level)
        caps = self.capabilities
        dimse_get = (
            caps.patient_root_get
            if default_root(level, root) is QueryRoot.PATIENT
            else caps.study_root_get
        )
        side = self._side(via, prefer_dimse=dimse_get or not caps.wado)
        return side.retrieve(level, query, root=root)

    def store(self, items: Iterable[StoreItem], *, via: Via | str | None = None) -> StoreResult:
        """C-STORE or STOW-RS; without ``via``, C-STORE if supported, else STOW-RS."""
        caps = self.capabilities
        return self._side(via, prefer_dimse=caps.store or not caps.stow).store(items)

    def probe(self) -> Capabilities:
        """Probe every configured side and merge the findings."""
        flags: dict[str, bool] = dict.fromkeys(Capabilities.FLAGS, False)
        details: dict[str, str] = {}
        for side in (self.dimse, self.dicomweb):
            if side is None:
                continue
            found = side.probe()
            names = side_flags(side)
            if self.dimse is None:
                names += ("echo",)  # a DICOMweb-only server's echo is a QIDO search
            for name in names:
                flags[name] = getattr(found, name)
                details[name] = found.details.get(name, "")
        for name in Capabilities.FLAGS:
            details.setdefault(name, "not configured")
        return Capabilities(**flags, probed_at=datetime.now(UTC), details=details)

    def with_capabilities(self, capabilities: Capabilities) -> DicomServer:
        """A new node whose spec carries ``capabilities`` (e.g. just probed)."""
        return DicomServer(dataclasses.replace(self.spec, capabilities=capabilities), self.settings)


def side_flags(side: DimseNode | DicomWebNode) -> tuple[str, ...]:
    """The capability flags a side measures."""
    if isinstance(side, DicomWebNode):
        return Capabilities.DICOMWEB_FLAGS
    return Capabilities.DIMSE_FLAGS
