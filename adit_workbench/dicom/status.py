"""DIMSE status codes as data, and the one place a failed status becomes an exception.

The categories come from pynetdicom's table (PS3.7 Annex C and the service-specific
statuses of PS3.4), so a code that a PACS invents still falls into ``Failure`` or
``Warning`` by its range.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from pydicom import Dataset
from pynetdicom.status import code_to_category

from ..errors import DicomStatusError

__all__ = [
    "Category",
    "Status",
    "category",
    "describe",
    "is_failure",
    "is_pending",
    "raise_for_status",
    "status_code",
]


class Category(StrEnum):
    """pynetdicom's status categories."""

    SUCCESS = "Success"
    PENDING = "Pending"
    WARNING = "Warning"
    CANCEL = "Cancel"
    FAILURE = "Failure"
    UNKNOWN = "Unknown"


class Status(IntEnum):
    """DIMSE statuses that the workbench reacts to (PS3.4 C.4, PS3.7 C)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01  # optional keys not supported
    CANCEL = 0xFE00
    SUB_OPERATIONS_WARNING = 0xB000  # some C-GET/C-MOVE sub-operations failed
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORIZED = 0x0124
    DUPLICATE_INVOCATION = 0x0210
    UNRECOGNIZED_OPERATION = 0x0211
    OUT_OF_RESOURCES = 0xA700
    OUT_OF_RESOURCES_MATCHES = 0xA701  # unable to calculate number of matches
    OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702  # C-GET without storage contexts/roles
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH = 0xA900
    UNABLE_TO_PROCESS = 0xC000  # Orthanc: also an unknown C-MOVE destination


_DESCRIPTIONS: dict[int, str] = {
    Status.SOP_CLASS_NOT_SUPPORTED: "SOP class not supported",
    Status.NOT_AUTHORIZED: "not authorized",
    Status.DUPLICATE_INVOCATION: "duplicate invocation",
    Status.UNRECOGNIZED_OPERATION: "unrecognized operation",
    Status.OUT_OF_RESOURCES: "out of resources",
    Status.OUT_OF_RESOURCES_MATCHES: "out of resources: unable to calculate matches",
    Status.OUT_OF_RESOURCES_SUB_OPERATIONS: "out of resources: unable to perform sub-operations",
    Status.MOVE_DESTINATION_UNKNOWN: "move destination unknown",
    Status.IDENTIFIER_DOES_NOT_MATCH: "identifier does not match SOP class",
    Status.UNABLE_TO_PROCESS: "unable to process",
    Status.CANCEL: "cancelled",
    Status.SUB_OPERATIONS_WARNING: "some sub-operations failed",
}


def status_code(status: Dataset | int) -> int:
    """The numeric status of a response status Dataset (or an int, passed through)."""
    if isinstance(status, int):
        return status
    return int(status.Status)


def category(status: Dataset | int) -> Category:
    """The category of a status: Success, Pending, Warning, Cancel, Failure or Unknown."""
    try:
        return Category(code_to_category(status_code(status)))
    except ValueError:
        return Category.UNKNOWN


def is_pending(status: Dataset | int) -> bool:
    """True for 0xFF00/0xFF01: more responses follow."""
    return category(status) is Category.PENDING


def is_failure(status: Dataset | int) -> bool:
    """True for failure, cancel and unknown statuses (anything a caller must not ignore)."""
    return category(status) in (Category.FAILURE, Category.CANCEL, Category.UNKNOWN)


def describe(status: Dataset | int) -> str:
    """A short human-readable text for a status, e.g. ``"status 0xA702 (out of …)"``."""
    code = status_code(status)
    text = _DESCRIPTIONS.get(code)
    if text is None and 0xC000 <= code <= 0xCFFF:
        text = "unable to process"
    return f"status 0x{code:04X}" + (f" ({text})" if text else f" ({category(code).value})")


def raise_for_status(node: str, operation: str, status: Dataset | int, detail: str = "") -> None:
    """Raise :class:`DicomStatusError` if ``status`` is a failure, cancel or unknown.

    ``detail`` is added to the message. The server's ErrorComment is kept out of the
    message, because a PACS may quote the query (patient IDs) in it; it is attached as
    ``exc.error_comment`` for whoever needs it.
    """
    if not is_failure(status):
        return
    code = status_code(status)
    parts = [_DESCRIPTIONS.get(code, "")] if code in _DESCRIPTIONS else []
    if detail:
        parts.append(detail)
    error = DicomStatusError(node, operation, code, category(code).value, "; ".join(parts))
    comment = status.get("ErrorComment") if isinstance(status, Dataset) else None
    error.error_comment = str(comment) if comment else None  # type: ignore[attr-defined]
    raise error
