"""STOW-RS on a node: the multipart body spooled part by part, each part checked, the good
ones stored through the caller's guarded node, every bad one reported."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..access.permissions import NodeRole
from ..errors import InputError
from .app import Caller, caller
from .dicomweb_common import (
    DICOM_JSON,
    Refusal,
    Trail,
    accepts,
    check_uid,
    error_response,
    guarded,
    node_spec,
    refusal_for,
    service_of,
)
from .dicomweb_stream import (
    SpooledPart,
    StowTooLarge,
    capped,
    media_params,
    spool_multipart,
)

__all__ = ["store"]

_CANNOT_UNDERSTAND = 0xC000
_PROCESSING_FAILURE = 0x0110
_STUDY_MISMATCH = 0xA900
#: Most bytes of a refused (too large) body read and dropped so that its client can
#: take the 413 (see :func:`_drain`).
_DRAIN_BYTES = 64_000_000


async def store(request: Request, who: Caller = Depends(caller)) -> Response:
    """STOW-RS: store the parts of a ``multipart/related; type="application/dicom"`` body.

    Good parts are stored, bad ones reported in FailedSOPSequence (409 if any failed).
    """
    name = request.path_params["node"]
    service = service_of(request)
    trail = Trail(who, service, "dicomweb.stow", name)
    study = request.path_params.get("study")
    try:
        check_uid(study, "study")
        trail.refs(study=study)
        accepts(request, DICOM_JSON, "application/json")
        await run_in_threadpool(node_spec, who, name)
        await run_in_threadpool(
            who.access.require_node, name, NodeRole.DESTINATION, action="dicomweb.stow"
        )
        kind, params = media_params(request.headers.get("content-type", ""))
        part_type = params.get("type", "application/dicom")
        if kind != "multipart/related" or part_type != "application/dicom":
            raise Refusal(415, "UnsupportedMediaType",
                          'send multipart/related; type="application/dicom"')  # fmt: skip
        if not params.get("boundary"):
            raise InputError("the multipart Content-Type has no boundary")
        max_bytes = int(service.settings.max_stow_mb * 1_000_000)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise StowTooLarge(max_bytes)
        service.settings.ensure_data_dir()
        folder = Path(tempfile.mkdtemp(prefix="stow-", dir=service.settings.data_dir))
        try:
            body = capped(request.stream(), max_bytes)
            parts = await spool_multipart(body, params["boundary"], folder)
            answer, failed = await run_in_threadpool(
                _store_parts, request, who, name, study, parts, trail
            )
        finally:
            await run_in_threadpool(shutil.rmtree, folder, True)
    except StowTooLarge as exc:
        trail.details["too_large"] = True
        await run_in_threadpool(trail.close, exc, 413)
        await _drain(request)
        refusal = Refusal(413, "TooLarge", f"{exc}; see ADIT_WB_MAX_STOW_MB")
        response = error_response(refusal)
        response.headers["Connection"] = "close"
        return response
    except Exception as exc:
        refusal = refusal_for(exc)
        await run_in_threadpool(trail.close, exc, refusal.status)
        return error_response(refusal)
    await run_in_threadpool(trail.close)
    return JSONResponse(answer.to_json_dict(), 409 if failed else 200, media_type=DICOM_JSON)


async def _drain(request: Request) -> None:
    """Read (and drop) what is left of a refused body, up to :data:`_DRAIN_BYTES`.

    A client that sends its whole body before it reads the answer (requests, curl
    without ``Expect: 100-continue``) sees a reset connection instead of the 413 when the
    server stops reading; beyond the bound the connection is closed all the same.
    """
    dropped = 0
    try:
        async for chunk in request.stream():
            dropped += len(chunk)
            if dropped > _DRAIN_BYTES:
                return
    except Exception:  # the stream was consumed in part, or the client went away
        return


def _store_parts(
    request: Request,
    who: Caller,
    name: str,
    study: str | None,
    parts: list[SpooledPart],
    trail: Trail,
) -> tuple[Dataset, int]:
    """Check each part, store the good ones through the guarded node, build the answer."""
    failed = Sequence()
    good: list[str] = []
    headers: dict[str, Dataset] = {}
    for part in parts:
        header = _read_part(part)
        if header is None:
            failed.append(_failed_item(None, _CANNOT_UNDERSTAND))
        elif study and str(header.get("StudyInstanceUID", "")) != study:
            failed.append(_failed_item(header, _STUDY_MISMATCH))
        else:
            headers[str(header.SOPInstanceUID)] = header
            good.append(str(part.path))
    received = sum(part.path.stat().st_size for part in parts)
    trail.details.update(parts=len(parts), bad_parts=len(failed), bytes=received)
    referenced = Sequence()
    if good:
        result = guarded(request, who, name).store(_items(good))
        for uid, header in headers.items():
            if uid in result.failed:
                failed.append(_failed_item(header, _PROCESSING_FAILURE))
            else:
                referenced.append(_referenced_item(request, header))
    trail.details.update(stored=len(referenced), failed=len(failed))
    answer = Dataset()
    if study:
        answer.RetrieveURL = _study_url(request, study)
    answer.ReferencedSOPSequence = referenced
    if failed:
        answer.FailedSOPSequence = failed
    return answer, len(failed)


def _read_part(part: SpooledPart) -> Dataset | None:
    """The header of a part that is a DICOM instance with its UIDs, else None."""
    kind = media_params(part.content_type)[0] if part.content_type else ""
    if kind not in ("", "application/dicom"):
        return None
    try:
        header = dcmread(part.path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    if not (header.get("SOPInstanceUID") and header.get("SOPClassUID")):
        return None
    return header


def _items(paths: list[str]) -> Iterator[str | Dataset]:
    """What to store: a Part-10 file as its path (sent undecoded), a bare dataset (no
    preamble, as dicomweb-client sends) read and given file meta, one at a time."""
    for path in paths:
        with open(path, "rb") as handle:
            handle.seek(128)
            if handle.read(4) == b"DICM":
                yield path
                continue
        ds = dcmread(path, force=True)
        meta = getattr(ds, "file_meta", None) or FileMetaDataset()
        if "TransferSyntaxUID" not in meta:
            implicit, little = ds.original_encoding
            meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian
                if implicit
                else ExplicitVRLittleEndian
                if little
                else ExplicitVRBigEndian
            )
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta = meta
        yield ds


def _failed_item(header: Dataset | None, reason: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = str(header.get("SOPClassUID", "")) if header else ""
    item.ReferencedSOPInstanceUID = str(header.get("SOPInstanceUID", "")) if header else ""
    item.FailureReason = reason
    return item


def _referenced_item(request: Request, header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = str(header.SOPClassUID)
    item.ReferencedSOPInstanceUID = str(header.SOPInstanceUID)
    study = str(header.get("StudyInstanceUID", ""))
    series = str(header.get("SeriesInstanceUID", ""))
    item.RetrieveURL = (
        f"{_study_url(request, study)}/series/{series}/instances/{header.SOPInstanceUID}"
    )
    return item


def _study_url(request: Request, study: str) -> str:
    path = request.url.path
    root = path[: path.index("/dicom-web/")] + f"/dicom-web/{request.path_params['node']}"
    return f"{str(request.base_url).rstrip('/')}{root}/studies/{study}"
