"""What the pseudonymizer does to each attribute of one dataset, with values masked.

:func:`explain` runs the pseudonymizer on a copy and records, per attribute (nested ones
with their sequence path), the action taken, why, the value before (masked: never the PHI
itself in full) and the value after. It is the ``--what-if`` of the CLI.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from .pseudonymizer import Pseudonymizer
from .rules import Rule, describe_tag

__all__ = ["ExplainRow", "Explanation", "explain", "mask"]

_ACTION_WORDS = {
    "D": "dummy",
    "Z": "empty",
    "X": "remove",
    "K": "keep",
    "C": "clean",
    "U": "remap UID",
}


def mask(value: Any, keep: int = 2) -> str:
    """Show the first ``keep`` characters and the length of a value, never all of it.

    >>> mask("DOE^JOHN")
    'DO******(8)'
    """
    if value is None:
        return ""
    if isinstance(value, Sequence):
        return f"<{len(value)} item(s)>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(mask(v, keep) for v in value)
    text = str(value)
    if len(text) <= keep:
        return "*" * len(text)
    return f"{text[:keep]}{'*' * min(len(text) - keep, 12)}({len(text)})"


def _show(value: Any) -> str:
    if value is None:
        return "<removed>"
    if isinstance(value, Sequence):
        return f"<{len(value)} item(s)>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    text = str(value)
    return text if len(text) <= 64 else text[:61] + "..."


@dataclass(frozen=True, slots=True)
class ExplainRow:
    """One attribute: where it is, what happened and why, before (masked) and after."""

    path: str
    tag: str
    keyword: str
    action: str
    reason: str
    before: str
    after: str


class Explanation(list[ExplainRow]):
    """The rows of :func:`explain`; ``str()`` gives an aligned text table."""

    def changed(self) -> Iterator[ExplainRow]:
        """Rows whose action is anything but keep."""
        return (row for row in self if row.action != "keep")

    def to_records(self) -> list[dict[str, str]]:
        """Plain dicts (for a DataFrame or JSON)."""
        return [
            {name: getattr(row, name) for name in ExplainRow.__dataclass_fields__} for row in self
        ]

    def to_dataframe(self) -> Any:
        """The rows as a pandas DataFrame (for notebooks)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.to_records())

    def __str__(self) -> str:
        header = ("tag", "attribute", "action", "reason", "before (masked)", "after")
        lines = [(r.tag, r.path + r.keyword, r.action, r.reason, r.before, r.after) for r in self]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        widths[-1] = 0
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        out += [
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        return "\n".join(out)


def explain(ds: Dataset, pseudonymizer: Pseudonymizer) -> Explanation:
    """Per attribute of ``ds``: the action, the reason, the value before (masked) and after.

    ``ds`` itself is not changed. Raises like the pseudonymizer would (for example
    :class:`~.pseudonymizer.BurnedInRefused`).
    """
    rows = Explanation()

    def record(path: str, tag: int, rule: Rule, before: Any, after: Any) -> None:
        action = _ACTION_WORDS.get(rule.action.value, rule.action.value)
        if rule.reason == "written":
            action = "write"
        elif after is None and before is not None:
            action = "remove"
        rows.append(
            ExplainRow(
                path=path,
                tag=str(BaseTag(tag)),
                keyword=describe_tag(tag),
                action=action,
                reason=rule.reason,
                before=mask(before),
                after=_show(after),
            )
        )

    pseudonymizer(copy.deepcopy(ds), trace=record)
    return rows
