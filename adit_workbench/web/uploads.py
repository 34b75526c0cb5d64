"""Routes for uploads: DICOM files sent by a client, pseudonymized here, stored to a node.

``POST /api/uploads`` takes ``multipart/form-data``: a ``params`` field holding JSON
(destination, pseudonym, trial and project fields, de-identification options) and one
``files`` part per DICOM file, named by its relative path (the name only labels the
file in the answer: nothing is ever read from or written to a path the client names).
It calls the same operation as ``wb.upload`` and ``adit-workbench upload``
(:func:`~adit_workbench.jobs.upload.upload_files`), so the checks, the audit rows and
the pseudonymization are a local call's, and the secret never leaves the service.

The body is capped by ``max_request_mb`` (413, as every route); ``GET /api/uploads``
tells the client that cap, so that it splits a large folder into requests below it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError
from ..jobs.upload import UploadItem
from .app import Caller, caller
from .errors import validation_message

__all__ = ["UploadParams", "router"]

router = APIRouter(prefix="/uploads", tags=["uploads"])

#: Files per request (the form parser refuses more than 1000 parts).
MAX_FILES = 500
_MAX_NAME = 1024


class UploadParams(BaseModel):
    """The ``params`` of an upload (the same keywords as ``wb.upload``)."""

    model_config = ConfigDict(extra="forbid")

    destination: str = Field(min_length=1, max_length=64)
    pseudonym: str | None = Field(default=None, max_length=64)
    trial_protocol_id: str | None = Field(default=None, max_length=64)
    trial_protocol_name: str | None = Field(default=None, max_length=64)
    project_name: str | None = Field(default=None, max_length=64)
    deid_options: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    via: str | None = Field(default=None, pattern="^(dimse|dicomweb)$")


def _params(raw: str) -> UploadParams:
    try:
        return UploadParams.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError(validation_message(exc.errors())[1]) from None


def _items(files: list[UploadFile]) -> Iterator[UploadItem]:
    """Each part as ``(name, bytes)``, read one at a time (the parser spooled them)."""
    for index, part in enumerate(files, 1):
        name = (part.filename or f"file {index}")[:_MAX_NAME]
        yield name, part.file.read()
        part.file.close()


@router.get("")
def limits(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """What one upload request may carry."""
    settings = request.app.state.service.settings
    return {"max_request_bytes": int(settings.max_request_mb * 1_000_000), "max_files": MAX_FILES}


@router.post("")
def upload(
    files: Annotated[list[UploadFile], File()],
    params: Annotated[str, Form(max_length=10_000)],
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """Pseudonymize the uploaded files and store them to ``params.destination``."""
    p = _params(params)
    if len(files) > MAX_FILES:
        raise InputError(f"at most {MAX_FILES} files per request; send the rest in another")
    result = who.wb.upload(
        _items(files),
        destination=p.destination,
        pseudonym=p.pseudonym,
        trial_protocol_id=p.trial_protocol_id,
        trial_protocol_name=p.trial_protocol_name,
        project_name=p.project_name,
        deid_options=p.deid_options,
        via=p.via,
    )
    return result.to_dict()
