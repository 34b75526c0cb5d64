"""ipywidgets components, one per dashboard: ``aw.widgets.SelectiveTransfer(wb)`` …

Each component is built only on the facade (``wb.node_specs()``, ``wb.node()``,
``wb.transfer()``, ``wb.jobs`` …), so it works unchanged over the embedded and the remote
backend. Components are imported on first use: ``import adit_workbench`` stays free of
ipywidgets.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .admin import Admin
    from .batch import BatchQuery
    from .batch_transfer import BatchTransfer
    from .explorer import Explorer
    from .jobs import Jobs
    from .mass import MassTransfer
    from .selective import SelectiveTransfer
    from .upload import Upload

__all__ = [
    "Admin",
    "BatchQuery",
    "BatchTransfer",
    "Explorer",
    "Jobs",
    "MassTransfer",
    "SelectiveTransfer",
    "Upload",
]

_WHERE = {
    "Admin": ".admin",
    "BatchQuery": ".batch",
    "BatchTransfer": ".batch_transfer",
    "Explorer": ".explorer",
    "Jobs": ".jobs",
    "MassTransfer": ".mass",
    "SelectiveTransfer": ".selective",
    "Upload": ".upload",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
