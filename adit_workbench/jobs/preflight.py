"""Checks made when a job is submitted, before anything is queued: fail in well under a
second with the reason, instead of minutes later as a bare "All tasks failed".

* :func:`check_nodes` (no network): a folder node's path exists (a destination's is
  writable); a probed server can do what the job needs of it (find, retrieve, receive).
* :func:`check_studies` (one C-FIND per 50 UIDs): the studies to transfer exist on the
  source. A source that does not answer is no reason to refuse the job: it is queued
  and retried like before.

The runner asks :func:`configuration_problem` before it retries a failed task: a
configuration error (the folder vanished, a capability was removed) is final.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING

from ..dicom.spec import FolderSpec, ServerSpec
from ..errors import InputError, NodeError
from ..store import nodes as node_store
from . import defaults
from .status import JobKind

if TYPE_CHECKING:
    from ..config import Settings
    from ..store import Database

__all__ = ["check_nodes", "check_studies", "configuration_problem"]

log = logging.getLogger(__name__)

_FIND = ("study_root_find", "patient_root_find", "qido")
_RETRIEVE = ("study_root_get", "patient_root_get", "study_root_move", "patient_root_move", "wado")
_RECEIVE = ("store", "stow")
#: UIDs per existence C-FIND (a UID list match; PACS limit the identifier's length).
UIDS_PER_QUERY = 50


def _need(spec: ServerSpec, role: str, flags: Sequence[str], what: str) -> None:
    caps = spec.capabilities
    if caps.probed_at is None:
        # Typed-in or default flags are a guess (the transfer layer tries the usual
        # services anyway); only a probe's finding is grounds to refuse.
        return
    if not any(getattr(caps, flag, False) for flag in flags):
        raise InputError(
            f"{role} {spec.name} cannot {what}: none of its capabilities "
            f"{', '.join(flags)} is enabled (set them, or run probe({spec.name!r}))"
        )


def _check_folder(spec: FolderSpec, role: str) -> None:
    path = spec.path
    if not path.exists():
        raise InputError(f"{role} {spec.name}: folder {path} does not exist")
    if not path.is_dir():
        raise InputError(f"{role} {spec.name}: {path} is not a folder")
    if role == "destination" and not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{role} {spec.name}: folder {path} is not writable")


def check_nodes(
    database: Database, kind: JobKind, *, source: str | None, destination: str | None
) -> None:
    """Raise :class:`InputError` naming the node when it cannot play its part in ``kind``."""
    with database.session() as session:
        specs = {
            role: node_store.get_node(session, name)
            for role, name in (("source", source), ("destination", destination))
            if name
        }
    for role, spec in specs.items():
        if isinstance(spec, FolderSpec):
            _check_folder(spec, role)
        elif role == "destination":
            _need(spec, role, _RECEIVE, "receive studies (C-STORE or STOW-RS)")
        else:
            _need(spec, role, _FIND, "be queried (C-FIND or QIDO-RS)")
            if kind.is_transfer:
                _need(spec, role, _RETRIEVE, "send studies (C-GET, C-MOVE or WADO-RS)")


def check_studies(
    database: Database,
    settings: Settings,
    source: str,
    study_uids: Sequence[str],
    *,
    where: dict[str, str] | None = None,
) -> None:
    """Raise :class:`InputError` naming the study UIDs ``source`` does not hold.

    ``where`` maps a UID to where it came from (``"line 4"``) for the message. Skipped
    for more than :data:`~.defaults.MAX_CHECKED_STUDIES` studies, or when the source
    cannot be asked now (it will be asked again when the task runs).
    """
    from ..dicom.node import open_node
    from ..dicom.query import find_studies

    uids = list(dict.fromkeys(u for u in study_uids if u))
    if not uids or len(uids) > defaults.MAX_CHECKED_STUDIES:
        return
    with database.session() as session:
        spec = node_store.get_node(session, source)
    found: set[str] = set()
    try:
        with closing(open_node(spec, settings)) as node:
            for start in range(0, len(uids), UIDS_PER_QUERY):
                chunk = uids[start : start + UIDS_PER_QUERY]
                found.update(s.study_uid for s in find_studies(node, study_uid=chunk))
    except NodeError as exc:
        log.warning("studies on %s not checked before queueing: %s", source, exc)
        return
    missing = [u for u in uids if u not in found]
    if not missing:
        return
    where = where or {}
    named = [f"{u} ({where[u]})" if u in where else u for u in missing[:5]]
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    noun = "study" if len(missing) == 1 else "studies"
    raise InputError(f"source {source} has no {noun} {', '.join(named)}{more}")


def configuration_problem(
    database: Database, kind: JobKind, source: str | None, destination: str | None
) -> str | None:
    """The reason a task cannot succeed however often it is tried, or None."""
    try:
        check_nodes(database, kind, source=source, destination=destination)
    except InputError as exc:
        return str(exc)
    return None
