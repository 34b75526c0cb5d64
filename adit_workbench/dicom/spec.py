"""Plain descriptions of nodes: what the database stores and the node classes are built from.

These are value objects only (no I/O): the persistence layer maps its rows to them and
the DICOM layer builds live node objects from them, so neither needs the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .display import cell, html_fields, html_table

__all__ = ["Capabilities", "FolderSpec", "ServerSpec"]


@dataclass(frozen=True)
class Capabilities:
    """What a DICOM server supports: typed by an admin or measured by ``probe()``.

    Each flag names one service. ``details`` holds a short human-readable finding per
    check (``"ok"``, ``"status 0xA702"`` …) when the flags come from a probe.
    """

    echo: bool = True
    patient_root_find: bool = False
    study_root_find: bool = True
    patient_root_get: bool = False
    study_root_get: bool = False
    patient_root_move: bool = False
    study_root_move: bool = False
    store: bool = False
    qido: bool = False
    wado: bool = False
    stow: bool = False
    probed_at: datetime | None = None
    details: dict[str, str] = field(default_factory=dict, compare=False)

    #: Flags measured over DIMSE, then over DICOMweb; FLAGS is both in a stable order.
    DIMSE_FLAGS = (
        "echo",
        "patient_root_find",
        "study_root_find",
        "patient_root_get",
        "study_root_get",
        "patient_root_move",
        "study_root_move",
        "store",
    )
    DICOMWEB_FLAGS = ("qido", "wado", "stow")
    FLAGS = DIMSE_FLAGS + DICOMWEB_FLAGS

    def as_flags(self) -> dict[str, bool]:
        """The support flags alone, in a stable order."""
        return {name: getattr(self, name) for name in self.FLAGS}

    def __repr__(self) -> str:
        return _changed_fields(self, skip=("details",))

    def _repr_html_(self) -> str:
        when = f", probed {cell(self.probed_at)}" if self.probed_at else ", not probed"
        rows = (
            (name, "yes" if on else "no", self.details.get(name, ""))
            for name, on in self.as_flags().items()
        )
        return html_table(("service", "supported", "finding"), rows, title=f"Capabilities{when}")


@dataclass(frozen=True)
class ServerSpec:
    """A DICOM server reached by DIMSE and/or DICOMweb.

    ``dicomweb_authorization`` is an HTTP ``Authorization`` header value; it is kept
    out of ``repr`` so that it never reaches a log or a notebook output.
    """

    name: str
    ae_title: str
    host: str
    port: int
    capabilities: Capabilities = field(default_factory=Capabilities)
    dicomweb_root_url: str | None = None
    dicomweb_qido_prefix: str = ""
    dicomweb_wado_prefix: str = ""
    dicomweb_stow_prefix: str = ""
    dicomweb_authorization: str | None = field(default=None, repr=False)
    max_search_results: int = 1000
    max_associations: int = 2

    def replace(self, **changes: object) -> ServerSpec:
        """A copy with some fields changed (e.g. new probed capabilities)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return _changed_fields(self, skip=("dicomweb_authorization",), always=4)

    def _repr_html_(self) -> str:
        flags = [name for name, on in self.capabilities.as_flags().items() if on]
        return html_fields(
            f"Server {self.name}",
            [
                ("DIMSE", f"{self.ae_title} @ {self.host}:{self.port}" if self.port else ""),
                ("DICOMweb", self.dicomweb_root_url),
                ("supports", ", ".join(flags)),
                ("probed", self.capabilities.probed_at),
                ("max results", self.max_search_results),
                ("associations", self.max_associations),
                ("authorization", "set (hidden)" if self.dicomweb_authorization else ""),
            ],
        )


@dataclass(frozen=True)
class FolderSpec:
    """A folder used as a source (upload) or destination of studies."""

    name: str
    path: Path
    quota_gb: float | None = None
    warn_size_gb: float | None = None

    def __repr__(self) -> str:
        return _changed_fields(self, always=2)

    def _repr_html_(self) -> str:
        return html_fields(
            f"Folder {self.name}",
            [("path", self.path), ("quota GB", self.quota_gb), ("warn at GB", self.warn_size_gb)],
        )


def _changed_fields(obj: Any, *, skip: tuple[str, ...] = (), always: int = 0) -> str:
    """``Type(field=value, …)`` with the first ``always`` fields and those that differ from
    their default: what says something about this object, in one line one can paste."""
    parts = []
    for index, f in enumerate(dataclasses.fields(obj)):
        if f.name in skip or not f.repr:
            continue
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if index < always or value != default:
            parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"
