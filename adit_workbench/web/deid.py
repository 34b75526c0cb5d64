"""``POST /api/deid/explain``: what a job's pseudonymization would do to one instance.

The uploaded instance is explained with the pseudonymizer a job of the same project and
options would use (:func:`adit_workbench.jobs.execute.build_pseudonymizer`: the same key
and profile), so the answer is exactly what a transfer would write. Showing a project's
pseudonyms and UIDs is what a transfer does too, so it needs the same permission
(``selective_transfer``) and is audited.
"""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import ValidationError

from ..access import Permission
from ..errors import InputError
from .app import Caller, Service, caller
from .errors import validation_message
from .models import ExplainParams

__all__ = ["router"]

router = APIRouter(prefix="/deid", tags=["pseudonymization"])


@router.post("/explain")
def explain(
    request: Request,
    file: Annotated[UploadFile, File()],
    params: Annotated[str, Form(max_length=10_000)] = "{}",
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    """Per attribute of the uploaded instance: action, reason, value before and after."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from ..deid import explain as explain_dataset
    from ..jobs.execute import build_pseudonymizer

    try:
        p = ExplainParams.model_validate_json(params)
    except ValidationError as exc:
        raise InputError(validation_message(exc.errors())[1]) from None
    who.access.require(Permission.SELECTIVE_TRANSFER, action="deid.explain")
    service: Service = request.app.state.service
    job = {"pseudonymize": True, **p.model_dump(exclude={"pseudonym"})}
    pseudonymizer = build_pseudonymizer(service.settings, job, p.pseudonym)  # checks options
    assert pseudonymizer is not None
    try:
        ds = dcmread(io.BytesIO(file.file.read()), force=False)
    except (InvalidDicomError, EOFError, ValueError, TypeError, AttributeError):
        raise InputError("the uploaded file is not a DICOM Part-10 file") from None
    details = {"project": p.project_name or "default", "options": p.deid_options}
    with who.access.audited("deid.explain", details=details):
        rows = explain_dataset(ds, pseudonymizer)
    return {"rows": rows.to_records(), "changed": sum(1 for _ in rows.changed())}
