"""Node repository: DICOM servers and folders in and out of the database as specs.

Callers hand in and get back the value objects of :mod:`adit_workbench.dicom.spec`;
rows never leave this module. Every function takes an open
:class:`~sqlalchemy.orm.Session` (from :meth:`Database.session`) and leaves committing to
it. Input is validated here, before the database sees it, so that errors name the field
(:class:`~adit_workbench.errors.InputError`) instead of surfacing as constraint failures.
A server's DICOMweb ``Authorization`` header is stored sealed (:mod:`.sealed`) under this
process's master secret, which only the service and its workers hold.
"""

from __future__ import annotations

import logging
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, with_polymorphic

from ..config import get_settings
from ..dicom.spec import Capabilities, FolderSpec, ServerSpec
from ..errors import ConfigurationError, InputError, NotFound
from .models import (
    AE_TITLE_LENGTH,
    HOST_LENGTH,
    NAME_LENGTH,
    PREFIX_LENGTH,
    URL_LENGTH,
    DicomFolder,
    DicomServer,
    Node,
)
from .sealed import NODE_CREDENTIAL, is_sealed, seal, unseal

__all__ = [
    "NodeSpec",
    "add_folder",
    "add_server",
    "get_node",
    "list_nodes",
    "remove_node",
    "save_capabilities",
]

NodeSpec = ServerSpec | FolderSpec

_ANY_NODE = with_polymorphic(Node, [DicomServer, DicomFolder])
_log = logging.getLogger(__name__)


# -- public API ------------------------------------------------------------------------
def add_server(session: Session, spec: ServerSpec) -> None:
    """Register a DICOM server.

    Raises
    ------
    InputError
        A field is invalid (the message names it) or a node of that name exists.
    """
    _validate_server(spec)
    row = DicomServer(name=spec.name)
    _server_fields_to_row(spec, row)
    _insert(session, row)


def add_folder(session: Session, spec: FolderSpec) -> None:
    """Register a folder (an absolute path; it need not exist yet).

    Raises
    ------
    InputError
        A field is invalid (the message names it) or a node of that name exists.
    """
    _validate_folder(spec)
    row = DicomFolder(
        name=spec.name,
        path=str(spec.path),
        quota_gb=_float_or_none(spec.quota_gb),
        warn_size_gb=_float_or_none(spec.warn_size_gb),
    )
    _insert(session, row)


def get_node(session: Session, name: str) -> NodeSpec:
    """The server or folder called ``name``.

    Raises
    ------
    NotFound
        No node has that name.
    """
    return _to_spec(_get_row(session, name))


def list_nodes(session: Session) -> list[NodeSpec]:
    """Every node, servers and folders together, sorted by name (case-insensitively).

    Sorted here rather than by the database so that the order does not depend on the
    server's collation.
    """
    rows = session.scalars(select(_ANY_NODE)).all()
    specs = [_to_spec(row) for row in rows]
    return sorted(specs, key=lambda spec: (spec.name.casefold(), spec.name))


def remove_node(session: Session, name: str) -> None:
    """Delete the node called ``name`` (its server or folder details go with it).

    Raises
    ------
    NotFound
        No node has that name.
    """
    session.delete(_get_row(session, name))
    session.flush()


def save_capabilities(session: Session, name: str, caps: Capabilities) -> None:
    """Store a server's capability flags, when they were probed and the findings.

    A naive ``probed_at`` is taken as local time and stored as UTC.

    Raises
    ------
    NotFound
        No node has that name.
    InputError
        The node is a folder: only servers have capabilities.
    """
    row = _get_row(session, name)
    if not isinstance(row, DicomServer):
        raise InputError(f"node {name!r} is a folder; only servers have capabilities")
    _capabilities_to_row(caps, row)
    row.touch()
    session.flush()


# -- mapping rows <-> specs (the only place that knows both) ----------------------------
def _server_fields_to_row(spec: ServerSpec, row: DicomServer) -> None:
    row.ae_title = spec.ae_title
    row.host = spec.host
    row.port = spec.port
    row.dicomweb_root_url = spec.dicomweb_root_url
    row.dicomweb_qido_prefix = spec.dicomweb_qido_prefix
    row.dicomweb_wado_prefix = spec.dicomweb_wado_prefix
    row.dicomweb_stow_prefix = spec.dicomweb_stow_prefix
    auth = spec.dicomweb_authorization
    row.dicomweb_authorization = seal(get_settings(), auth, NODE_CREDENTIAL) if auth else None
    row.max_search_results = spec.max_search_results
    row.max_associations = spec.max_associations
    _capabilities_to_row(spec.capabilities, row)


def _capabilities_to_row(caps: Capabilities, row: DicomServer) -> None:
    for flag, value in caps.as_flags().items():
        setattr(row, flag, bool(value))
    probed_at = caps.probed_at
    row.probed_at = probed_at.astimezone(UTC) if probed_at is not None else None
    row.probe_details = {str(key): str(value) for key, value in caps.details.items()}


def _to_spec(row: Node) -> NodeSpec:
    if isinstance(row, DicomServer):
        flags = {flag: bool(getattr(row, flag)) for flag in Capabilities.FLAGS}
        caps = Capabilities(**flags, probed_at=row.probed_at, details=dict(row.probe_details or {}))
        return ServerSpec(
            name=row.name,
            ae_title=row.ae_title,
            host=row.host,
            port=row.port,
            capabilities=caps,
            dicomweb_root_url=row.dicomweb_root_url,
            dicomweb_qido_prefix=row.dicomweb_qido_prefix,
            dicomweb_wado_prefix=row.dicomweb_wado_prefix,
            dicomweb_stow_prefix=row.dicomweb_stow_prefix,
            dicomweb_authorization=_open_credential(row),
            max_search_results=row.max_search_results,
            max_associations=row.max_associations,
        )
    if isinstance(row, DicomFolder):
        return FolderSpec(
            name=row.name,
            path=Path(row.path),
            quota_gb=row.quota_gb,
            warn_size_gb=row.warn_size_gb,
        )
    raise TypeError(f"unexpected node row {row!r}")  # pragma: no cover


# -- helpers ---------------------------------------------------------------------------
def _open_credential(row: DicomServer) -> str | None:
    """The clear ``Authorization`` header of ``row``; None, with a warning, when it cannot
    be opened (sealed under another master secret): one node's DICOMweb then answers 401,
    and every other node stays usable."""
    stored = row.dicomweb_authorization
    if not stored:
        return None
    try:
        if not is_sealed(stored):  # written around the store (raw SQL): not ours to trust
            raise ConfigurationError("not sealed")
        return unseal(get_settings(), stored, NODE_CREDENTIAL)
    except ConfigurationError:
        _log.warning(
            "node %s: its DICOMweb credential cannot be opened with this master secret; "
            "register the node again with its credential",
            row.name,
        )
        return None


def _get_row(session: Session, name: str) -> Node:
    row = session.scalars(select(_ANY_NODE).where(_ANY_NODE.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no node named {name!r}")
    return row


def _existing_kind(session: Session, name: str) -> str | None:
    return session.scalars(select(Node.kind).where(Node.name == name)).first()


def _insert(session: Session, row: Node) -> None:
    existing = _existing_kind(session, row.name)
    if existing is not None:
        raise InputError(f"a node named {row.name!r} already exists (a {existing})")
    try:
        # A savepoint, so that losing a race with another writer leaves the caller's
        # session usable and the error names the node rather than a constraint.
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise InputError(f"a node named {row.name!r} already exists") from exc


def _fail(kind: str, name: object, field: str, problem: str) -> InputError:
    return InputError(f"{kind} {name!r}: {field} {problem}")


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{kind} name must not be empty")
    if name != name.strip():
        raise _fail(kind, name, "name", "must not start or end with spaces")
    if len(name) > NAME_LENGTH:
        raise _fail(kind, name, "name", f"is longer than {NAME_LENGTH} characters")
    if not name.isprintable():
        raise _fail(kind, name, "name", "must not contain control characters")


def _check_int(name: str, field: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("server", name, field, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"{low}-{high}" if high is not None else f">= {low}"
        raise _fail("server", name, field, f"must be {bounds}, got {value}")


def _check_text(name: str, field: str, value: object, max_length: int) -> None:
    if not isinstance(value, str):
        raise _fail("server", name, field, f"must be text, got {type(value).__name__}")
    if len(value) > max_length:
        raise _fail("server", name, field, f"is longer than {max_length} characters")


def _validate_server(spec: ServerSpec) -> None:
    _check_name("server", spec.name)
    name = spec.name
    ae = spec.ae_title
    _check_text(name, "ae_title", ae, AE_TITLE_LENGTH)
    if not ae.strip() or ae != ae.strip():
        raise _fail("server", name, "ae_title", "must be 1-16 characters without outer spaces")
    if not ae.isascii() or not ae.isprintable() or "\\" in ae:
        raise _fail("server", name, "ae_title", "must be printable ASCII without backslash")
    _check_text(name, "host", spec.host, HOST_LENGTH)
    if not spec.host or any(ch.isspace() for ch in spec.host):
        raise _fail("server", name, "host", "must be a host name or address without spaces")
    _check_int(name, "port", spec.port, 1, 65535)
    _check_int(name, "max_search_results", spec.max_search_results, 1, None)
    _check_int(name, "max_associations", spec.max_associations, 1, None)
    url = spec.dicomweb_root_url
    if url is not None:
        _check_text(name, "dicomweb_root_url", url, URL_LENGTH)
        if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
            raise _fail("server", name, "dicomweb_root_url", "must be an http(s):// URL")
    for field in ("dicomweb_qido_prefix", "dicomweb_wado_prefix", "dicomweb_stow_prefix"):
        _check_text(name, field, getattr(spec, field), PREFIX_LENGTH)
    auth = spec.dicomweb_authorization
    if auth is not None and not isinstance(auth, str):
        # Never echo the value: it is a credential.
        raise _fail("server", name, "dicomweb_authorization", "must be text")
    if not isinstance(spec.capabilities, Capabilities):
        raise _fail("server", name, "capabilities", "must be a Capabilities object")


def _validate_folder(spec: FolderSpec) -> None:
    _check_name("folder", spec.name)
    path: Any = spec.path
    if not isinstance(path, str | Path) or not str(path):
        raise _fail("folder", spec.name, "path", "must be a path")
    if not Path(path).is_absolute():
        raise _fail("folder", spec.name, "path", f"must be absolute, got {str(path)!r}")
    for field in ("quota_gb", "warn_size_gb"):
        value = getattr(spec, field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise _fail("folder", spec.name, field, f"must be a number of GB, got {value!r}")
        if value < 0:
            raise _fail("folder", spec.name, field, f"must not be negative, got {value}")


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)
