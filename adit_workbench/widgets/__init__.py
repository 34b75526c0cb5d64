"""ipywidgets components, one per dashboard: ``aw.widgets.SelectiveTransfer(wb)`` …

Each component is built only on the facade (``wb.node_specs()``, ``wb.node()``,
``wb.transfer()``, ``wb.jobs`` …), so it works unchanged over the embedded and the remote
backend. Components are imported on first use: ``import adit_workbench`` stays free of
ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
