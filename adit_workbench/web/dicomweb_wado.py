"""WADO-RS on a node: instances streamed as ``multipart/related`` (or DICOM JSON metadata),
fetched undecoded and pseudonymized on the way when asked."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Generator, Iterator

from fastapi import Depends, Request, Response
from pydicom import Dataset, dcmread
from pydicom.uid import UID

from ..access import Permission
from ..access.permissions import NodeRole
from ..deid import Pseudonymizer
from ..dicom.spec import ServerSpec
from ..errors import DicomStatusError, InputError
from .app import Caller, Service, caller
from .dicomweb_common import (
    DICOM_JSON,
    Refusal,
    Trail,
    accepted_syntaxes,
    accepts,
    check_uid,
    guarded,
    node_spec,
    pseudonymizer_for,
    refusal_for,
    run,
    service_of,
)
from .dicomweb_response import ThreadedStream
from .dicomweb_stream import (
    Relay,
    fetch_method,
    iter_instances,
    iter_study,
    multipart,
    pseudonymized,
    relay_wado,
    transfer_syntax_of,
)

log = logging.getLogger(__name__)

__all__ = ["retrieve", "retrieve_metadata"]

_WADO_PARAMS = frozenset(
    {"pseudonym", "trial_protocol_id", "trial_protocol_name", "project", "via"}
)


def retrieve(request: Request, who: Caller = Depends(caller)) -> Response:
    """WADO-RS: the instances of a study, series or instance as ``multipart/related``."""
    return _wado(request, who, metadata=False)


def retrieve_metadata(request: Request, who: Caller = Depends(caller)) -> Response:
    """WADO-RS: the DICOM JSON of a study's, series' or instance's instances."""
    return _wado(request, who, metadata=True)


def _wado(request: Request, who: Caller, *, metadata: bool) -> Response:
    name = request.path_params["node"]
    service = service_of(request)
    trail = Trail(who, service, "dicomweb.wado", name)
    ids = {k: request.path_params.get(k) for k in ("study", "series", "sop")}
    trail.details["level"] = "IMAGE" if ids["sop"] else "SERIES" if ids["series"] else "STUDY"
    trail.details["metadata"] = metadata

    def work() -> Response:
        syntaxes = None
        if metadata:
            accepts(request, DICOM_JSON, "application/json")
        else:
            accepts(request, "multipart/related")
            syntaxes = accepted_syntaxes(request)
        unknown = sorted(set(request.query_params) - _WADO_PARAMS)
        if unknown:
            raise InputError(f"unknown query parameter {unknown[0][:40]!r}")
        study, series, sop = (check_uid(ids[k], k) for k in ("study", "series", "sop"))
        assert study is not None
        trail.refs(study=study, series=series, sop=sop)
        spec = node_spec(who, name)
        who.access.require_node(name, NodeRole.SOURCE, action="dicomweb.wado")
        pz, facts = pseudonymizer_for(request, who, required=False)
        if pz is None:
            who.access.require(Permission.TRANSFER_UNPSEUDONYMIZED, action="dicomweb.wado",
                               node=name)  # fmt: skip
        trail.details.update(facts)
        method = fetch_method(spec, service.settings, request.query_params.get("via", "auto"))
        trail.details["via"] = method
        relayable = pz is None and not metadata and syntaxes is None
        if method == "wado" and relayable and isinstance(spec, ServerSpec):
            relay = relay_wado(spec, service.settings, study, series, sop)
            return _relayed(relay, trail)
        if series is None:
            source = iter_study(spec, service.settings, study, method=method)
        else:
            source = iter_instances(spec, service.settings, study, series, sop, method=method)
        parts = _prepared(source, pz, service, metadata, trail)
        if syntaxes is not None:
            parts = _as_stored(parts, syntaxes)
        first = _first_part(parts, request, who, name, study, series, sop)
        return _streamed(first, parts, metadata, trail)

    return run(trail, work)


def _relayed(relay: Relay, trail: Trail) -> Response:
    """The upstream answer as it arrives; the audit row when it has all passed."""

    chunks = relay.chunks
    assert chunks is not None

    def body() -> Iterator[bytes]:
        trail.details["bytes"] = 0
        try:
            for chunk in chunks:
                trail.details["bytes"] += len(chunk)
                yield chunk
        except GeneratorExit:
            trail.details.update(aborted=True, count=relay.parts)
            trail.close(ConnectionAbortedError(), 499)
            raise
        except Exception as exc:
            trail.details["count"] = relay.parts
            trail.close(exc, refusal_for(exc).status)
            log.warning("DICOMweb relay failed mid-stream: %s", type(exc).__name__)
            raise
        finally:
            chunks.close()
        trail.details.update(count=relay.parts, relayed=True)
        trail.close()

    return ThreadedStream(body(), media_type=relay.content_type, name="wb-wado-relay")


def _first_part(
    parts: Generator[bytes, None, None],
    request: Request,
    who: Caller,
    name: str,
    study: str,
    series: str | None,
    sop: str | None,
) -> bytes:
    """The first part of a retrieve: failures before the first byte get their own status
    (404 for what the node does not hold), later ones cut the stream."""
    try:
        return next(parts)
    except StopIteration:
        raise Refusal(404, "NotFound", f"{name}: no such study, series or instance") from None
    except DicomStatusError:
        parts.close()
        # A PACS refuses a C-GET/C-MOVE of what it does not hold (Orthanc: 0xC000): ask
        # whether it holds it, so that an unknown study is a 404, not a 502.
        if not _holds(request, who, name, study, series, sop):
            raise Refusal(404, "NotFound", f"{name}: no such study, series or instance") from None
        raise
    except BaseException:
        parts.close()
        raise


def _holds(
    request: Request, who: Caller, name: str, study: str, series: str | None, sop: str | None
) -> bool:
    query = Dataset()
    query.StudyInstanceUID = study
    level = "STUDY"
    if series:
        query.SeriesInstanceUID, level = series, "SERIES"
    if sop:
        query.SOPInstanceUID, level = sop, "IMAGE"
    found = guarded(request, who, name).find(level, query, limit=1)
    return any(True for _ in found)


def _prepared(
    source: Generator[bytes, None, None],
    pz: Pseudonymizer | None,
    service: Service,
    metadata: bool,
    trail: Trail,
) -> Generator[bytes, None, None]:
    """Each instance as it will be sent: pseudonymized, and as JSON for metadata."""
    trail.details["count"] = trail.details["bytes"] = 0
    refused = 0
    spool = service.settings.data_dir
    items: Iterator[bytes | None] = source if pz is None else pseudonymized(source, pz, spool)
    try:
        for data in items:
            if data is None:  # refused by the burned-in policy, as a transfer refuses it
                refused += 1
                trail.details["refused"] = refused
                continue
            trail.details["count"] += 1
            out = _metadata_json(data) if metadata else data
            trail.details["bytes"] += len(out)
            yield out
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
        source.close()


def _as_stored(
    parts: Generator[bytes, None, None], syntaxes: frozenset[str]
) -> Generator[bytes, None, None]:
    """``parts``, each checked to be in one of the transfer syntaxes the caller accepts.

    The service does not transcode. The first part decides the status (406 with the
    stored syntax named); a later part in another syntax (a mixed study) cuts the answer
    without its closing delimiter, so that no client takes a partial answer for whole.
    """
    try:
        for data in parts:
            stored = transfer_syntax_of(data)
            if stored not in syntaxes:
                shown = f"{stored} ({UID(stored).name})" if stored else "an unknown syntax"
                asked = ", ".join(sorted(syntaxes))
                raise Refusal(
                    406,
                    "NotAcceptable",
                    f"the instances are stored as {shown} and are sent as stored; accept "
                    f"transfer-syntax={stored or '*'} or transfer-syntax=*, not {asked}",
                )
            yield data
    finally:
        parts.close()


def _metadata_json(data: bytes) -> bytes:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    return json.dumps(ds.to_json_dict(bulk_data_threshold=1 << 20)).encode()


def _streamed(
    first: bytes, rest: Generator[bytes, None, None], metadata: bool, trail: Trail
) -> Response:
    def chain() -> Iterator[bytes]:
        yield first
        yield from rest

    def body(framed: Iterator[bytes]) -> Iterator[bytes]:
        try:
            yield from framed
        except GeneratorExit:
            trail.details["aborted"] = True
            trail.close(ConnectionAbortedError(), 499)
            raise
        except Exception as exc:
            # Too late for a status: the connection is cut without the closing
            # delimiter, so no client takes a partial answer for a whole one.
            trail.close(exc, refusal_for(exc).status)
            log.warning("DICOMweb retrieve failed mid-stream: %s", type(exc).__name__)
            raise
        finally:
            rest.close()
        trail.close()

    if metadata:

        def array() -> Iterator[bytes]:
            yield b"["
            for i, item in enumerate(chain()):
                yield item if i == 0 else b"," + item
            yield b"]"

        return ThreadedStream(body(array()), media_type=DICOM_JSON, name="wb-wado-json")
    boundary = secrets.token_hex(16)
    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return ThreadedStream(body(multipart(chain(), boundary)), media_type=media, name="wb-wado")
