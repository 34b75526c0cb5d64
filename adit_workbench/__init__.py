"""adit_workbench: find, copy, pseudonymize and account for DICOM studies, Jupyter-first.

The public surface is small on purpose; see :func:`connect` (coming with the facade) and
the exception tree in :mod:`adit_workbench.errors`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .config import Settings, get_settings
from .errors import InputError, NodeError, PermissionDenied, WorkbenchError

try:
    __version__ = version("adit-workbench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "InputError",
    "NodeError",
    "PermissionDenied",
    "Settings",
    "WorkbenchError",
    "__version__",
    "get_settings",
]
