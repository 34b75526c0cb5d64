"""The one exception tree of adit_workbench.

Every failure the package reports is a :class:`WorkbenchError`. Callers (the CLI, the
widgets, the job runner) can catch the root and show ``str(exc)``: messages are written
for a person, name the node, operation, file, row or field concerned, and never carry
PHI (patient names, IDs, birth dates).

Two broad families matter to callers:

* :class:`InputError` – the request itself is wrong (bad argument, bad file, unknown
  node). Repeating it will not help; the CLI exits with code 2.
* everything else – the request was fine but the operation failed (a node refused, a
  server was unreachable, a transfer was incomplete). ``retriable`` says whether trying
  again later may succeed; the CLI exits with code 1.
"""

from __future__ import annotations

__all__ = [
    "AssociationRejected",
    "ConfigurationError",
    "DicomStatusError",
    "DicomWebError",
    "InputError",
    "MaintenanceMode",
    "NodeAccessDenied",
    "NodeError",
    "NodeTimeout",
    "NodeUnreachable",
    "NotFound",
    "NotSupported",
    "PermissionDenied",
    "PseudonymizationError",
    "StoreError",
    "TransferError",
    "TransferIncomplete",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Root of every error raised by adit_workbench."""

    #: Whether the same operation may succeed if tried again later.
    retriable: bool = False


class InputError(WorkbenchError, ValueError):
    """The caller's input is invalid: an argument, a file, a row or a field."""


class ConfigurationError(WorkbenchError):
    """The settings or the environment are unusable (bad URL, unreadable data dir …)."""


class NotFound(InputError, LookupError):
    """A named thing (node, job, user, group) does not exist."""


class PermissionDenied(WorkbenchError):
    """The current user lacks a permission or access to a node."""

    def __init__(self, message: str, *, permission: str | None = None) -> None:
        super().__init__(message)
        self.permission = permission


class StoreError(WorkbenchError):
    """The database could not be read or written."""


class NodeError(WorkbenchError):
    """A DICOM node (server or folder) failed an operation.

    Attributes
    ----------
    node:
        Name of the node as registered in the workbench.
    operation:
        What was attempted, e.g. ``"C-FIND"``, ``"C-ECHO"``, ``"QIDO-RS"``.
    """

    def __init__(self, node: str, operation: str, detail: str) -> None:
        self.node = node
        self.operation = operation
        self.detail = detail
        super().__init__(f"{node}: {operation} failed: {detail}")


class NodeUnreachable(NodeError):
    """No connection could be made (refused, no route, DNS)."""

    retriable = True


class NodeTimeout(NodeError):
    """The node did not answer in time."""

    retriable = True


class AssociationRejected(NodeError):
    """The DICOM association was rejected or aborted by the peer."""

    retriable = True


class NotSupported(NodeError):
    """The node does not support the requested operation (as configured or probed)."""


class DicomStatusError(NodeError):
    """A DIMSE service answered with a failure, cancel or unexpected status.

    Attributes
    ----------
    status:
        The DIMSE status code, e.g. ``0xC000``.
    category:
        pynetdicom's category for it (``"Failure"``, ``"Cancel"``, ``"Warning"`` …).
    """

    def __init__(
        self, node: str, operation: str, status: int, category: str, detail: str = ""
    ) -> None:
        self.status = status
        self.category = category
        text = f"status 0x{status:04X} ({category})"
        if detail:
            text += f": {detail}"
        super().__init__(node, operation, text)
        # Out-of-resources statuses (0xA7xx) and refused moves (0xA801 aside) are often
        # transient on a busy PACS; a malformed identifier (0xA9xx, 0xC0xx) is not.
        self.retriable = (status & 0xFF00) == 0xA700


class DicomWebError(NodeError):
    """A DICOMweb request failed with an HTTP error status."""

    def __init__(self, node: str, operation: str, http_status: int, detail: str = "") -> None:
        self.http_status = http_status
        text = f"HTTP {http_status}"
        if detail:
            text += f": {detail}"
        super().__init__(node, operation, text)
        self.retriable = http_status >= 500 or http_status in (408, 429)


class PseudonymizationError(WorkbenchError):
    """An instance could not be pseudonymized (or was refused, e.g. burned-in text)."""


class TransferError(WorkbenchError):
    """A transfer did not deliver what was expected."""


class NodeAccessDenied(PermissionDenied):
    """The current user's groups may not use a node in the requested role.

    Attributes
    ----------
    node:
        Name of the node.
    role:
        ``"source"``, ``"destination"`` or ``None`` (any use at all).
    """

    def __init__(self, message: str, *, node: str, role: str | None) -> None:
        super().__init__(message, permission=f"{role or 'any'} access to node {node}")
        self.node = node
        self.role = role


class MaintenanceMode(WorkbenchError):
    """The site is in maintenance: no new jobs until an admin ends it.

    Attributes
    ----------
    announcement:
        The admins' message (may be empty).
    """

    retriable = True

    def __init__(self, announcement: str = "") -> None:
        text = "the workbench is in maintenance mode: new jobs are not accepted"
        if announcement:
            text += f" ({announcement})"
        super().__init__(text)
        self.announcement = announcement


class TransferIncomplete(TransferError):
    """A transfer delivered nothing (or less than required); ``retriable`` says whether a
    later attempt may succeed (a re-run delivers only what is missing)."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable
