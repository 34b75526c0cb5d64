"""Package exports imported on first use (PEP 562).

A package's ``__init__`` names where each export lives; the export is imported the first
time it is asked for and then kept in the package's namespace. This keeps a remote client
free of SQLAlchemy and the store, and ``adit-workbench --help`` free of pandas and pydicom
(``tests/test_imports.py``); the packages list their exports under ``TYPE_CHECKING`` too,
so that mypy and editors see them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, str], extra: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    ``where`` maps each export to its module, relative to the package (``".control"``);
    ``dir()`` lists what is loaded, every export and ``extra`` (names a package's own
    ``__getattr__`` answers before delegating here).
    """
    namespace = vars(sys.modules[package])
    offered = frozenset(where) | frozenset(extra)

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | offered)

    return __getattr__, __dir__
