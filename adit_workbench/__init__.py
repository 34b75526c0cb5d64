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

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._lazy import lazy_exports

if TYPE_CHECKING:
    from .config import Settings, get_settings
    from .deid import Option, Profile, Pseudonymizer, scan_leaks
    from .errors import InputError, NodeError, PermissionDenied, WorkbenchError
    from .jobs import BatchFileError, JobFailed, JobStatus
    from .workbench import Workbench, WorkbenchAPI, connect

#: Where each public name lives. Imported on first use (PEP 562): the command line
#: starts in a fraction of the time when ``adit-workbench --help`` does not pull in
#: pandas, SQLAlchemy and pydicom through this package's ``__init__``.
_LAZY = {
    "Settings": ".config",
    "get_settings": ".config",
    "Option": ".deid",
    "Profile": ".deid",
    "Pseudonymizer": ".deid",
    "scan_leaks": ".deid",
    "InputError": ".errors",
    "NodeError": ".errors",
    "PermissionDenied": ".errors",
    "WorkbenchError": ".errors",
    "BatchFileError": ".jobs",
    "JobFailed": ".jobs",
    "JobStatus": ".jobs",
    "Workbench": ".workbench",
    "WorkbenchAPI": ".workbench",
    "connect": ".workbench",
}


_exports, __dir__ = lazy_exports(__name__, _LAZY, extra=("widgets",))


def __getattr__(name: str) -> Any:
    value: Any
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("adit-workbench")
        except PackageNotFoundError:  # running from a source tree without installation
            value = "0.0.0"
    elif name == "widgets":  # offered to completion, not to ``import *`` (ipywidgets)
        value = import_module(".widgets", __name__)
    else:
        return _exports(name)
    globals()[name] = value
    return value


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
    "WorkbenchAPI",
    "WorkbenchError",
    "__version__",
    "connect",
    "get_settings",
    "scan_leaks",
]
