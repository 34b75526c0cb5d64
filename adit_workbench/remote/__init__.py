"""The remote workbench: the notebook API as a client of the workbench service.

``aw.connect()`` returns a :class:`RemoteWorkbench` inside a JupyterHub user server or
wherever ``ADIT_WB_SERVICE_URL`` and ``ADIT_WB_API_TOKEN`` are set. It returns the same
result types, job handles with the same methods, and raises the same exceptions as the
local :class:`~adit_workbench.workbench.Workbench`, while holding only a URL and a token.
"""

from __future__ import annotations

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
