"""SandboxPacs: a small Query/Retrieve SCP on loopback, backed by :class:`Archive`.

It answers C-ECHO, C-FIND (Patient Root and Study Root, all four levels), C-GET, C-MOVE to
known peers and C-STORE, so that every workbench feature can be tried without a hospital
PACS. Switches turn services off the way real archives do, so that capability probing
can be tested: ``allow_get=False`` answers every C-GET with 0x0124 (Refused: Not
Authorised), ``allow_move=False`` answers C-MOVE with a failure, and
``allow_patient_root=False`` rejects the Patient Root presentation contexts at negotiation.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.transport import ThreadedAssociationServer

from ..dicom import nodelay
from ..errors import InputError, NodeError, StoreError
from .archive import Archive, StoredInstance, check_encoded
from .matching import LEVELS, UNIQUE_KEYS, build_response, matches

__all__ = ["SandboxPacs"]

# pynetdicom.sop_class builds its names at run time, out of mypy's sight; spelt out here.
Verification = UID("1.2.840.10008.1.1")
PatientRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.1.1")
PatientRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.1.2")
PatientRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.1.3")
StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
StudyRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.2.2")
StudyRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.2.3")

log = logging.getLogger(__name__)

# DIMSE statuses used here (PS3.4 C.4, PS3.7 C).
PENDING = 0xFF00
CANCEL = 0xFE00
REFUSED_NOT_AUTHORISED = 0x0124
IDENTIFIER_DOES_NOT_MATCH = 0xA900
STORE_OUT_OF_RESOURCES = 0xA700
STORE_CANNOT_UNDERSTAND = 0xC000
MAX_REQUESTED_CONTEXTS = 128

_PATIENT_ROOT = {
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
}
_COLUMNS = {
    "PatientID": "patient_id",
    "StudyInstanceUID": "study_uid",
    "SeriesInstanceUID": "series_uid",
    "SOPInstanceUID": "sop_uid",
}


class _Refused(Exception):
    """Raised inside a C-MOVE handler: pynetdicom turns it into a failure status."""


def _exact_values(identifier: Dataset, keyword: str) -> list[str] | None:
    """The value list of a key if it is an exact (wildcard-free) match, else None."""
    if keyword not in identifier:
        return None
    elem = identifier[keyword]
    if elem.value in (None, ""):
        return None
    values = [str(v) for v in elem.value] if elem.VM > 1 else str(elem.value).split("\\")
    if any("*" in v or "?" in v or not v for v in values):
        return None
    return values


class SandboxPacs:
    """An embedded PACS on loopback.

    Args:
        root: Archive folder (files and SQLite index); created if missing.
        ae_title: AE title the server answers to (any called AE title is accepted).
        host: Address to bind; keep the default, the sandbox is for this machine only.
        port: Port to bind; 0 picks a free one (see :attr:`port` after :meth:`start`).
        peers: C-MOVE destinations, AE title → (host, port).
        allow_get: Serve C-GET; if False every C-GET is answered 0x0124.
        allow_move: Serve C-MOVE; if False every C-MOVE is answered with a failure.
        allow_patient_root: Accept the Patient Root Q/R presentation contexts.
        peers_file: Optional JSON file with ``{"peers": {AE: [host, port]}}``, re-read on
            every C-MOVE so that a running server learns new destinations.
    """

    def __init__(
        self,
        root: Path,
        *,
        ae_title: str = "SANDBOX",
        host: str = "127.0.0.1",
        port: int = 0,
        peers: dict[str, tuple[str, int]] | None = None,
        allow_get: bool = True,
        allow_move: bool = True,
        allow_patient_root: bool = True,
        peers_file: Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.peers: dict[str, tuple[str, int]] = dict(peers or {})
        self.allow_get = allow_get
        self.allow_move = allow_move
        self.allow_patient_root = allow_patient_root
        self.peers_file = peers_file
        self._archive: Archive | None = Archive(self.root)
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()

    @property
    def archive(self) -> Archive:
        """The archive behind the server (reopened if :meth:`close` closed it)."""
        if self._archive is None:
            self._archive = Archive(self.root)
        return self._archive

    # -- lifecycle ---------------------------------------------------------------------
    def _make_ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs for pixel data
        ae.add_supported_context(Verification)
        models = [
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
        ]
        if self.allow_patient_root:
            models += sorted(_PATIENT_ROOT)
        for model in models:
            ae.add_supported_context(model)
        # Both roles accepted: plain C-STORE in, and the SCP role a C-GET requester offers.
        for cx in AllStoragePresentationContexts:
            assert cx.abstract_syntax is not None
            ae.add_supported_context(
                cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
            )
        return ae

    def start(self) -> SandboxPacs:
        """Start serving in background threads; returns self once the port is bound."""
        with self._lock:
            if self._server is not None:
                return self
            nodelay.install()
            handlers: list[Any] = [
                (evt.EVT_C_FIND, self._on_find),
                (evt.EVT_C_GET, self._on_get),
                (evt.EVT_C_MOVE, self._on_move),
                (evt.EVT_C_STORE, self._on_store),
            ]
            try:
                server = self._make_ae().start_server(
                    (self.host, self.port), block=False, evt_handlers=handlers
                )
            except OSError as exc:
                detail = f"cannot listen on port {self.port}: {exc}"
                raise NodeError(self.ae_title, "start", detail) from exc
            assert server is not None
            self._server = server
            self.port = int(server.server_address[1])
            log.info("sandbox %s listening on %s:%d", self.ae_title, self.host, self.port)
            return self

    def stop(self) -> None:
        """Stop serving (idempotent); the archive stays usable and ``start()`` may follow."""
        with self._lock:
            if self._server is not None:
                # Shutting down joins every association's thread: a client's idle
                # association (a pooled one) would hold it until its timeout, 10 s.
                for assoc in list(self._server.active_associations):
                    assoc.abort()
                self._server.shutdown()
                self._server = None

    def close(self) -> None:
        """Stop serving and close the archive index."""
        self.stop()
        with self._lock:
            if self._archive is not None:
                self._archive.close()
                self._archive = None

    @property
    def running(self) -> bool:
        """Whether the server is accepting associations."""
        return self._server is not None

    def __enter__(self) -> SandboxPacs:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- archive -----------------------------------------------------------------------
    def seed(self, patients: int, seed: int = 0, **options: Any) -> int:
        """Add synthetic patients if the archive is empty; returns the instances added.

        By default each patient gets two studies (one CT, one MR) of two series of three
        64×64 instances; ``options`` override any :func:`~.synthetic.iter_datasets`
        argument.
        """
        from .synthetic import iter_datasets

        if self.archive.count()["instances"]:
            return 0
        kwargs: dict[str, Any] = {"studies": 2, "series": 2, "instances": 3, "modality": "mixed"}
        kwargs.update(options)
        added = 0
        for ds in iter_datasets(patients=patients, seed=seed, **kwargs):
            self.archive.add_dataset(ds)
            added += 1
        return added

    def add_file(self, path: str | Path) -> Path:
        """Copy a Part-10 file into the archive (see :meth:`Archive.add_file`)."""
        return self.archive.add_file(path)

    def count(self) -> dict[str, int]:
        """Numbers of patients, studies, series and instances in the archive."""
        return self.archive.count()

    # -- helpers -----------------------------------------------------------------------
    def _peer(self, ae_title: str) -> tuple[str, int] | None:
        peers = dict(self.peers)
        if self.peers_file is not None:
            try:
                data = json.loads(self.peers_file.read_text())
                peers.update({k: (str(v[0]), int(v[1])) for k, v in data.get("peers", {}).items()})
            except (OSError, ValueError, TypeError, IndexError):
                log.warning("sandbox peers file unreadable; using the peers given at start")
        return peers.get(ae_title.strip())

    def _level(self, identifier: Dataset, model: str) -> str | None:
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in LEVELS:
            return None
        if level == "PATIENT" and model not in _PATIENT_ROOT:
            return None  # Study Root has no PATIENT level
        return level

    def _select(self, identifier: Dataset, model: str) -> list[StoredInstance] | None:
        """Instances a C-GET/C-MOVE identifier names, or None if it is malformed."""
        level = self._level(identifier, model)
        if level is None:
            return None
        if _exact_values(identifier, UNIQUE_KEYS[level]) is None:
            return None  # retrieval must name the entities, never "everything"
        prefilter = {
            column: values
            for keyword, column in _COLUMNS.items()
            if (values := _exact_values(identifier, keyword)) is not None
        }
        uids = [
            rec[UNIQUE_KEYS[level]]
            for rec in self.archive.records(level, prefilter)
            if matches(_unique_keys_only(identifier), rec)
        ]
        return self.archive.instances_under(level, uids)

    # -- handlers ----------------------------------------------------------------------
    def _on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        model = str(event.request.AffectedSOPClassUID)
        identifier = event.identifier
        level = self._level(identifier, model)
        if level is None:
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        prefilter = {
            column: values
            for keyword, column in _COLUMNS.items()
            if (values := _exact_values(identifier, keyword)) is not None
        }
        patient_root = model in _PATIENT_ROOT
        for record in self.archive.records(level, prefilter):
            if event.is_cancelled:
                yield CANCEL, None
                return
            if matches(identifier, record):
                yield (
                    PENDING,
                    build_response(
                        identifier,
                        record,
                        level,
                        patient_root=patient_root,
                        retrieve_ae_title=self.ae_title,
                    ),
                )

    def _on_get(self, event: evt.Event) -> Iterator[Any]:
        if not self.allow_get:
            # pynetdicom wants a sub-operation count before any status.
            yield 1
            yield REFUSED_NOT_AUTHORISED, None
            return
        instances = self._select(event.identifier, str(event.request.AffectedSOPClassUID))
        if instances is None:
            yield 1
            yield IDENTIFIER_DOES_NOT_MATCH, None
            return
        yield len(instances)
        yield from self._send(event, instances)

    def _on_move(self, event: evt.Event) -> Iterator[Any]:
        if not self.allow_move:
            raise _Refused("C-MOVE is switched off on this sandbox")
        destination = str(event.move_destination or "").strip()
        address = self._peer(destination)
        if address is None:
            log.warning("C-MOVE to unknown destination AE %r refused", destination)
            yield None, None  # pynetdicom answers 0xA801 (move destination unknown)
            return
        instances = self._select(event.identifier, str(event.request.AffectedSOPClassUID))
        if instances is None:
            raise _Refused("C-MOVE identifier lacks the unique key of its level")
        yield address[0], address[1], {"contexts": _contexts_for(instances)}
        yield len(instances)
        yield from self._send(event, instances)

    def _send(self, event: evt.Event, instances: list[StoredInstance]) -> Iterator[Any]:
        for inst in instances:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, pydicom.dcmread(inst.path)

    def _on_store(self, event: evt.Event) -> int:
        try:
            encoded = event.encoded_dataset()
            check_encoded(encoded)  # before pynetdicom decodes it (deep nesting recurses)
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.archive.add_dataset(ds, encoded)
        except InputError:
            return STORE_CANNOT_UNDERSTAND
        except (StoreError, OSError):
            log.exception("sandbox could not archive a received instance")
            return STORE_OUT_OF_RESOURCES
        return 0x0000


def _unique_keys_only(identifier: Dataset) -> Dataset:
    """Retrieval matches on unique keys only (PS3.4 C.4.2.2.1); other keys are ignored."""
    out = Dataset()
    for keyword in UNIQUE_KEYS.values():
        if keyword in identifier:
            out.add(identifier[keyword])
    return out


def _contexts_for(instances: list[StoredInstance]) -> list[PresentationContext]:
    """Presentation contexts for a C-MOVE's outgoing association: one per SOP class."""
    syntaxes: dict[str, list[str]] = {}
    for inst in instances:
        proposed = syntaxes.setdefault(
            inst.sop_class_uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        if inst.transfer_syntax not in proposed:
            proposed.insert(0, inst.transfer_syntax)
    contexts = [build_context(sop, ts) for sop, ts in sorted(syntaxes.items())]
    if len(contexts) > MAX_REQUESTED_CONTEXTS:
        log.warning("C-MOVE spans %d SOP classes; only %d offered", len(contexts), 128)
    return contexts[:MAX_REQUESTED_CONTEXTS] or [build_context(Verification)]
