"""adit_workbench: find, copy, pseudonymize and account for DICOM studies, Jupyter-first.

A small curated surface, in the style of rq and dicomweb-client::

    import adit_workbench as aw
    wb = aw.connect()                       # settings, identity, database
    pacs = wb.node("SANDBOX")               # only nodes the user may use
    pacs.echo()
    hits = pacs.find_studies(patient_id="SYN0001", modality="CT")
    hits.df

Everything else stays importable from its sub-package (``adit_workbench.dicom``,
``adit_workbench.deid`` …) without being advertised here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .config import Settings, get_settings
from .deid import Option, Profile, Pseudonymizer, scan_leaks
from .errors import InputError, NodeError, PermissionDenied, WorkbenchError
from .jobs import BatchFileError, JobFailed, JobStatus
from .workbench import Workbench, connect

try:
    __version__ = version("adit-workbench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "BatchFileError",
    "InputError",
    "JobFailed",
    "JobStatus",
    "NodeError",
    "Option",
    "PermissionDenied",
    "Profile",
    "Pseudonymizer",
    "Settings",
    "Workbench",
    "WorkbenchError",
    "__version__",
    "connect",
    "get_settings",
    "scan_leaks",
]


def __getattr__(name: str) -> object:
    # ``aw.widgets`` on first use only: ipywidgets stays out of plain imports.
    if name == "widgets":
        from importlib import import_module

        return import_module(".widgets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
