"""The remote workbench: the notebook API as a client of the workbench service.

``aw.connect()`` returns a :class:`RemoteWorkbench` inside a JupyterHub user server or
wherever ``ADIT_WB_SERVICE_URL`` and ``ADIT_WB_API_TOKEN`` are set. It returns the same
result types, job handles with the same methods, and raises the same exceptions as the
local :class:`~adit_workbench.workbench.Workbench`, while holding only a URL and a token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .client import KeyHeldByService, ServiceClient, ServiceUnavailable
    from .discover import service_address
    from .jobs import RemoteJobHandle, RemoteJobManager, RemoteJobResults
    from .node import RemoteNode, RemoteResultStream
    from .workbench import RemoteWorkbench

__all__ = [
    "KeyHeldByService",
    "RemoteJobHandle",
    "RemoteJobManager",
    "RemoteJobResults",
    "RemoteNode",
    "RemoteResultStream",
    "RemoteWorkbench",
    "ServiceClient",
    "ServiceUnavailable",
    "service_address",
]

#: Where each public name lives, imported on first use (PEP 562): ``connect()`` asks
#: ``service_address`` first, and an embedded workbench never loads the HTTP client.
_WHERE = {
    "KeyHeldByService": ".client",
    "RemoteJobHandle": ".jobs",
    "RemoteJobManager": ".jobs",
    "RemoteJobResults": ".jobs",
    "RemoteNode": ".node",
    "RemoteResultStream": ".node",
    "RemoteWorkbench": ".workbench",
    "ServiceClient": ".client",
    "ServiceUnavailable": ".client",
    "service_address": ".discover",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
