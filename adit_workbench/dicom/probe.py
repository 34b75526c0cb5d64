"""Measure what a server really supports instead of trusting the admin's flags.

Every check is harmless to a clinical archive: finds use a non-matching key or a limit of
one, retrieves fetch at most one instance (found by a study-root IMAGE find limited to
one) and discard it, and nothing is ever written: C-STORE support is read off the
association negotiation, STOW support off the answer to an empty multipart POST.

Each check leaves a short finding in ``Capabilities.details``: ``"ok"``, ``"ok (…)"``,
``"assumed: …"`` when the server could only be asked about a non-existent object, or the
reason it is unsupported.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from pydicom import Dataset

from ..errors import (
    AssociationRejected,
    DicomStatusError,
    DicomWebError,
    NodeError,
    NodeTimeout,
    NodeUnreachable,
    NotSupported,
)
from .association import GET_STORAGE_SOP_CLASSES, AssociationKind
from .node import QueryLevel, QueryRoot
from .receiver import allow_list, expect_peer
from .spec import Capabilities
from .status import Status, describe
from .storescp import StoreServer

if TYPE_CHECKING:
    from .dicomweb import DicomWebNode
    from .dimse import DimseNode, RetrieveResult

__all__ = ["probe_dicomweb", "probe_dimse", "summarize"]

log = logging.getLogger(__name__)

# A study date no archive holds: the find is valid and matches nothing.
_NO_MATCH_DATE = "18000101"
_NO_MATCH_PATIENT = "ADIT-WB-PROBE-NO-MATCH"
# Statuses that say "I will not do this for you", as opposed to "nothing matched".
_REFUSALS = {
    Status.SOP_CLASS_NOT_SUPPORTED,
    Status.NOT_AUTHORIZED,
    Status.OUT_OF_RESOURCES_SUB_OPERATIONS,
    Status.MOVE_DESTINATION_UNKNOWN,
    Status.UNABLE_TO_PROCESS,
}


def _unknown_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _reason(exc: NodeError) -> str:
    if isinstance(exc, DicomStatusError):
        return describe(exc.status)
    if isinstance(exc, AssociationRejected):
        return f"association refused or aborted ({exc.detail})"
    if isinstance(exc, NotSupported):
        return f"presentation context rejected ({exc.detail})"
    return exc.detail


# -- DIMSE -----------------------------------------------------------------------------
def _sample_instance(node: DimseNode) -> Dataset | None:
    """One real instance's identifiers, or None if the server has none (or will not say)."""
    query = Dataset()
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(query, keyword, "")
    try:
        for match in node.find(QueryLevel.IMAGE, query, limit=1, root=QueryRoot.STUDY):
            if all(k in match for k in ("StudyInstanceUID", "SeriesInstanceUID")):
                return match
    except NodeError:
        pass
    # Hierarchical servers want the upper keys: walk study -> series -> image.
    try:
        found: Dataset | None = None
        for level, key in (
            (QueryLevel.STUDY, "StudyInstanceUID"),
            (QueryLevel.SERIES, "SeriesInstanceUID"),
            (QueryLevel.IMAGE, "SOPInstanceUID"),
        ):
            step = Dataset()
            if found is not None:
                step.update(found)
            setattr(step, key, "")
            step.PatientID = step.get("PatientID", "")
            found = next(iter(node.find(level, step, limit=1)), None)
            if found is None:
                return None
        return found
    except NodeError:
        return None


def _retrieve_query(sample: Dataset | None, root: QueryRoot) -> Dataset:
    query = Dataset()
    if root is QueryRoot.PATIENT:
        query.PatientID = str(sample.get("PatientID", "")) if sample else _NO_MATCH_PATIENT
    query.StudyInstanceUID = str(sample.StudyInstanceUID) if sample else _unknown_uid()
    query.SeriesInstanceUID = str(sample.SeriesInstanceUID) if sample else _unknown_uid()
    query.SOPInstanceUID = str(sample.SOPInstanceUID) if sample else _unknown_uid()
    return query


def _judge(
    run: Callable[[], RetrieveResult], sample: Dataset | None, what: str
) -> tuple[bool, str]:
    """Run one retrieve check and turn its outcome into (supported, finding)."""
    try:
        result = run()
    except DicomStatusError as exc:
        if sample is None:
            return False, f"not verified: no instance to test with; {describe(exc.status)}"
        return False, f"refused: {describe(exc.status)}"
    except NodeError as exc:
        return False, _reason(exc)
    if sample is None:
        return True, f"assumed: accepted a request for an unknown UID ({describe(result.status)})"
    if result.completed >= 1:
        return True, f"ok (1 instance {what})"
    return False, f"answered {describe(result.status)} but sent nothing"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # As a server would: a port in TIME_WAIT after the last receiver is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@contextmanager
def _temporary_receiver(node: DimseNode) -> Iterator[list[int]]:
    """The Store SCP transfers use (:mod:`.storescp`), counting and discarding what the
    probed node sends, unless a receiver already holds the port."""
    settings = node.settings
    host, port = settings.receiver_host, settings.receiver_port
    received: list[int] = []
    if not _port_free(host, port):
        yield received
        return

    def on_store(request: dict[int, bytes], data: bytes) -> int:
        received.append(1)
        return 0x0000

    server = StoreServer(
        host,
        port,
        on_store,
        ae_title=settings.ae_title,
        allow=allow_list([f"{node.spec.ae_title}@{node.spec.host}"]),
        timeout=settings.network_timeout,
        artim=settings.connect_timeout,
    )
    try:
        yield received
    finally:
        server.shutdown()


def _get_one(node: DimseNode, query: Dataset, root: QueryRoot) -> RetrieveResult:
    """C-GET with the engine transfers use, the instances counted and dropped."""
    stream = node.get_stream(QueryLevel.IMAGE, query, root=root)
    while True:
        try:
            next(stream)
        except StopIteration as stop:
            result: RetrieveResult = stop.value
            return result


def _check(
    caps: dict[str, bool], details: dict[str, str], flag: str, fn: Callable[[], str]
) -> None:
    try:
        details[flag] = fn()
        caps[flag] = True
    except NodeError as exc:
        caps[flag] = False
        details[flag] = _reason(exc)


def probe_dimse(node: DimseNode) -> Capabilities:
    """Probe C-ECHO, C-FIND, C-GET, C-MOVE (both roots) and C-STORE negotiation."""
    caps: dict[str, bool] = {}
    details: dict[str, str] = {}

    try:
        node.echo()
        caps["echo"], details["echo"] = True, "ok"
    except (NodeUnreachable, NodeTimeout, AssociationRejected) as exc:
        # Every further check would wait for the same timeout and say the same thing.
        for flag in Capabilities.DIMSE_FLAGS:
            caps[flag], details[flag] = False, f"not tried: {_reason(exc)}"
        details["echo"] = _reason(exc)
        return _dimse_capabilities(caps, details)
    except NodeError as exc:  # e.g. verification not supported: finds may still work
        caps["echo"], details["echo"] = False, _reason(exc)

    def study_find() -> str:
        query = Dataset()
        query.StudyDate = _NO_MATCH_DATE
        query.StudyInstanceUID = ""
        list(node.find(QueryLevel.STUDY, query, limit=1, root=QueryRoot.STUDY))
        return "ok"

    def patient_find() -> str:
        query = Dataset()
        query.PatientID = _NO_MATCH_PATIENT
        query.PatientName = ""
        list(node.find(QueryLevel.PATIENT, query, limit=1, root=QueryRoot.PATIENT))
        return "ok"

    _check(caps, details, "study_root_find", study_find)
    _check(caps, details, "patient_root_find", patient_find)

    sample = _sample_instance(node)

    for root in (QueryRoot.PATIENT, QueryRoot.STUDY):
        flag = f"{root.value}_root_get"
        query = _retrieve_query(sample, root)
        caps[flag], details[flag] = _judge(partial(_get_one, node, query, root), sample, "received")

    settings = node.settings
    destination = settings.ae_title
    # A receiver already running in this process takes the probed node's instances too.
    with _temporary_receiver(node), expect_peer(node.spec.ae_title, node.spec.host):
        for root in (QueryRoot.PATIENT, QueryRoot.STUDY):
            flag = f"{root.value}_root_move"
            query = _retrieve_query(sample, root)
            ok, finding = _judge(
                partial(node.move, QueryLevel.IMAGE, query, destination, root=root),
                sample,
                f"moved to {destination}",
            )
            if not ok and ("0xA801" in finding or "0xC000" in finding):
                finding += (
                    f"; the server refused or cannot route to {destination}: is it registered "
                    f"there as {settings.receiver_host}:{settings.receiver_port}?"
                )
            caps[flag], details[flag] = ok, finding

    def store() -> str:
        with node.pool.lease(AssociationKind.STORE, "C-STORE") as pooled:
            accepted = {
                str(cx.abstract_syntax)
                for cx in pooled.assoc.accepted_contexts
                if str(cx.abstract_syntax) in GET_STORAGE_SOP_CLASSES
            }
        if not accepted:
            raise NotSupported(node.name, "C-STORE", "no storage context accepted")
        return f"ok ({len(accepted)} storage SOP classes accepted; nothing sent)"

    _check(caps, details, "store", store)
    return _dimse_capabilities(caps, details)


def _dimse_capabilities(caps: dict[str, bool], details: dict[str, str]) -> Capabilities:
    for flag in Capabilities.DICOMWEB_FLAGS:
        details.setdefault(flag, "not probed: no DICOMweb root configured")
    return Capabilities(**caps, probed_at=datetime.now(UTC), details=details)


# -- DICOMweb --------------------------------------------------------------------------
def _http_status(node: DicomWebNode, operation: str, method: str, url: str, **kw: Any) -> int:
    with node.wrap(operation):
        response = node.session.request(method, url, **kw)
    return response.status_code


def probe_dicomweb(node: DicomWebNode) -> Capabilities:
    """Probe QIDO-RS (one study), WADO-RS (one instance's metadata) and STOW-RS (empty POST).

    STOW is judged without storing anything: an empty multipart/related POST. A STOW
    service answers 200 (nothing stored, as Orthanc does) or rejects the empty body
    with 400/409/415; a server without STOW answers 404/405/501, and 401/403 means we
    may not store. Any other answer is reported as unsupported with its code.
    """
    caps: dict[str, bool] = {}
    details: dict[str, str] = {}
    client = node.client

    def qido() -> str:
        node.call("QIDO-RS", client.search_for_studies, limit=1)
        return "ok"

    _check(caps, details, "qido", qido)

    sample: dict[str, Any] | None = None
    if caps["qido"]:
        try:
            found = node.call("QIDO-RS", client.search_for_instances, limit=1)
            sample = found[0] if found else None
        except NodeError:
            sample = None

    def wado() -> str:
        if sample is not None:
            ds = Dataset.from_json(sample)
            node.call(
                "WADO-RS",
                client.retrieve_instance_metadata,
                str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID),
            )
            return "ok (metadata of one instance)"
        url = f"{node.service_url('wado')}/studies/{_unknown_uid()}/metadata"
        code = _http_status(
            node, "WADO-RS", "GET", url, headers={"Accept": "application/dicom+json"}
        )
        if code == 404 and caps["qido"]:
            return "assumed: answered 404 for an unknown study (no instance to test with)"
        if 200 <= code < 300:
            return "ok"
        raise DicomWebError(node.name, "WADO-RS", code, "no instance to test with")

    _check(caps, details, "wado", wado)

    def stow() -> str:
        boundary = f"adit-wb-probe-{uuid.uuid4().hex}"
        code = _http_status(
            node,
            "STOW-RS",
            "POST",
            f"{node.service_url('stow')}/studies",
            data=f"--{boundary}--\r\n".encode(),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
        if 200 <= code < 300:
            return f"ok (empty STOW answered HTTP {code}; nothing stored)"
        if code in (400, 409, 415):
            return f"assumed: rejected an empty STOW with HTTP {code} (nothing stored)"
        reason = {401: "not permitted", 403: "not permitted"}.get(code, "no STOW service")
        raise DicomWebError(node.name, "STOW-RS", code, reason)

    _check(caps, details, "stow", stow)
    for flag in Capabilities.DIMSE_FLAGS:
        details[flag] = "not probed: no DIMSE address configured"
    details["echo"] = "ok (QIDO answered)" if caps["qido"] else f"no: {details['qido']}"
    return Capabilities(
        echo=caps["qido"],
        study_root_find=False,
        **caps,
        probed_at=datetime.now(UTC),
        details=details,
    )


def summarize(caps: Capabilities) -> str:
    """One line per check: ``flag  yes/no  finding`` (for notebooks and the CLI)."""
    lines = []
    for flag in Capabilities.FLAGS:
        mark = "yes" if getattr(caps, flag) else "no"
        lines.append(f"{flag:<18} {mark:<4} {caps.details.get(flag, '')}")
    return "\n".join(lines)
