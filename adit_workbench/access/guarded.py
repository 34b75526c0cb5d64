"""Live nodes that check access and audit every call: what ``Workbench.node()`` hands out.

A live node from the DICOM layer knows nothing about users. Wrapped here, each query or
retrieval needs the node's ``source`` role, each store its ``destination`` role, probing
the ``admin`` permission, and every call leaves an audit row with what was asked (level,
filters, count). Methods this module does not know are treated as reads (source role) and
audited under their own name: a new node method is never an unchecked way around access.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydicom import Dataset

from .control import Access
from .permissions import NodeRole, Permission

__all__ = ["GuardedNode"]

_QUERY_METHODS = frozenset(
    {
        "find",
        "find_patients",
        "find_studies",
        "find_series",
        "find_instances",
        "iter_patients",
        "iter_studies",
        "iter_series",
        "run_many",
    }
)
_PASS_THROUGH = frozenset({"close", "name", "capabilities", "spec"})


def _describe(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What a call asked for, for the audit row (values may identify: database only)."""
    details: dict[str, Any] = {}
    for value in args:
        if isinstance(value, Dataset):
            details["keys"] = {
                e.keyword or str(e.tag): str(e.value)
                for e in value
                if e.value not in (None, "", b"")
            }
        elif isinstance(value, str):
            details.setdefault("level", value)
    filters = {k: v for k, v in kwargs.items() if k not in ("limit", "via", "root", "level")}
    if filters:
        details["filters"] = filters
    for key in ("level", "limit", "via", "root"):
        if kwargs.get(key) is not None:
            details[key] = kwargs[key]
    return details


class GuardedNode:
    """A live node seen through one user's access. Create it with ``GuardedNode(node, access)``."""

    def __init__(self, node: Any, access: Access) -> None:
        self._node = node
        self._access = access

    @property
    def name(self) -> str:
        """The node's registered name."""
        return str(self._node.name)

    def __repr__(self) -> str:
        return f"<GuardedNode {self._node!r} for {self._access.user!r}>"

    def __enter__(self) -> GuardedNode:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the node's connections."""
        self._node.close()

    def echo(self, **kwargs: Any) -> None:
        """Verify the node answers (any role on the node suffices)."""
        self._access.require_node(self.name, action="node.echo")
        with self._access.audited("node.echo", node=self.name):
            self._node.echo(**kwargs)

    def probe(self) -> Any:
        """Measure what the node supports (admins only; the result is not stored here)."""
        self._access.require(Permission.ADMIN, action="node.probe", node=self.name)
        with self._access.audited("node.probe", node=self.name):
            return self._node.probe()

    def find(self, *args: Any, **kwargs: Any) -> Any:
        """Query the node (needs the source role; audited with level and keys)."""
        return self._call("find", "query", NodeRole.SOURCE, args, kwargs)

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        """Retrieve instances (needs the source role)."""
        return self._call("retrieve", "retrieve", NodeRole.SOURCE, args, kwargs)

    def store(self, items: Any, **kwargs: Any) -> Any:
        """Send instances to the node (needs the destination role)."""
        return self._call("store", "store", NodeRole.DESTINATION, (items,), kwargs)

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._node, attr)
        if attr.startswith("_") or attr in _PASS_THROUGH or not callable(value):
            return value
        action = "query" if attr in _QUERY_METHODS else f"node.{attr}"

        def guarded(*args: Any, **kwargs: Any) -> Any:
            return self._call(attr, action, NodeRole.SOURCE, args, kwargs)

        guarded.__doc__ = getattr(value, "__doc__", None)
        return guarded

    def _call(
        self,
        method: str,
        action: str,
        role: NodeRole,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        target: Callable[..., Any] = getattr(self._node, method)
        described = {"method": method, **_describe(args if method != "store" else (), kwargs)}
        self._access.require_node(self.name, role, action=action, details=described)
        with self._access.audited(action, node=self.name, details=described) as details:
            result = target(*args, **kwargs)
            if method == "store":
                if hasattr(args[0], "__len__"):
                    details["items"] = len(args[0])
            elif hasattr(result, "__len__") and not isinstance(result, str):
                details["count"] = len(result)
            else:
                details["streamed"] = True
            return result
