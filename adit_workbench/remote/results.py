"""Query results of a remote node: the local result types, fetching through the service.

``series.datasets()``, ``series.volume()``, ``series.thumbnail()``, ``study.preview()``
and ``instance.dataset()`` are the very methods of :mod:`adit_workbench.dicom.results`;
only the fetch differs. A local node is handed the project's pseudonymizer to apply in
the kernel; a kernel of the service holds no key, so ``pseudonym=`` and ``project=`` go
to the service (``/api/nodes/{node}/studies/…``), which pseudonymizes as a transfer job
of the project does and streams the result. A ``pseudonymizer=`` of the user's own is
applied here to the originals (which the service sends only to users allowed them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pydicom import Dataset

from ..dicom import results as local
from ..dicom.filters import Level
from ..errors import InputError

__all__ = ["REMOTE_TYPES", "Instance", "Patient", "Series", "Study"]


class _ThroughService:
    """``_retrieve`` of a result whose node is a :class:`~.node.RemoteNode`."""

    def _retrieve(
        self,
        level: str,
        *,
        pseudonym: str | None,
        project: str | None,
        pseudonymizer: Callable[[Dataset], Dataset] | None,
    ) -> Iterator[Dataset]:
        node: Any = self._need_node()  # type: ignore[attr-defined]
        if pseudonymizer is not None and (pseudonym is not None or project is not None):
            raise InputError("give pseudonym=/project= or pseudonymizer=, not both")
        query = Dataset()
        keys = (("StudyInstanceUID", "study_uid"), ("SeriesInstanceUID", "series_uid"),
                ("SOPInstanceUID", "sop_instance_uid"))  # fmt: skip
        for keyword, attribute in keys:
            value = getattr(self, attribute, "")
            if value:
                setattr(query, keyword, value)
        via: str = getattr(self, "via", "auto")
        stream = node.retrieve(
            level, query, via=None if via in ("", "auto") else via,
            pseudonym=pseudonym, project=project,
        )  # fmt: skip
        return local._applied(stream, pseudonymizer)


class Patient(_ThroughService, local.Patient):
    """A patient on a node of the service."""


class Study(_ThroughService, local.Study):
    """A study on a node of the service (``preview()``, ``datasets()`` through it)."""


class Series(_ThroughService, local.Series):
    """A series on a node of the service (``datasets()``, ``volume()``, ``thumbnail()``)."""


class Instance(_ThroughService, local.Instance):
    """An instance on a node of the service (``dataset()``, ``thumbnail()``)."""


#: The result class of each level for answers of the service.
REMOTE_TYPES: dict[Level, Any] = {
    Level.PATIENT: Patient,
    Level.STUDY: Study,
    Level.SERIES: Series,
    Level.INSTANCE: Instance,
}
