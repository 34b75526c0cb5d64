"""What the pseudonymizer does to each attribute of one dataset, with values masked.

:func:`explain` runs the pseudonymizer on a copy and records, per attribute (nested ones
with their sequence path), the action taken, why, the value before (masked: never the PHI
itself in full) and the value after. It is the ``--what-if`` of the CLI.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from ..config import BurnedInPolicy
from ..dicom.display import MAX_LINES, html_table, text_block
from .pseudonymizer import BURNED_IN_MODALITIES, Pseudonymizer
from .rules import Rule, describe_tag

__all__ = ["ExplainRow", "Explanation", "burned_in_reason", "explain", "mask"]

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
    """The rows of :func:`explain`; ``str()`` gives every row as an aligned text table.

    In a notebook it shows a summary and the changed attributes first (what was removed,
    replaced or written), the kept ones only counted.

    Attributes
    ----------
    refused:
        Why pseudonymization would refuse this instance (the rows then show what would
        happen were it allowed), or None.
    warning:
        Why it would be written with a warning (burned-in policy ``warn``), or None.
    """

    refused: str | None = None
    warning: str | None = None

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

    def summary(self) -> str:
        """One line: how many attributes, how many changed and how."""
        changed = list(self.changed())
        actions: dict[str, int] = {}
        for row in changed:
            actions[row.action] = actions.get(row.action, 0) + 1
        how = ", ".join(f"{n} {a}" for a, n in sorted(actions.items(), key=lambda i: -i[1]))
        text = f"{len(self)} attributes: {len(changed)} changed"
        text += f" ({how})" if how else ""
        return text + f", {len(self) - len(changed)} kept"

    def _notes(self) -> list[str]:
        notes = []
        if self.refused:
            notes.append(f"REFUSED: {self.refused}")
        if self.warning:
            notes.append(f"WARNING: {self.warning}")
        return notes

    def _table(self, rows: list[ExplainRow]) -> list[str]:
        header = ("tag", "attribute", "action", "reason", "before (masked)", "after")
        lines = [(r.tag, r.path + r.keyword, r.action, r.reason, r.before, r.after) for r in rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        widths[-1] = 0
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        out += [
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        return out

    def __str__(self) -> str:
        return "\n".join([*self._notes(), *self._table(list(self))])

    def __repr__(self) -> str:
        changed = list(self.changed())
        body = self._table(changed) if changed else []
        return text_block(
            "\n".join([f"Explanation: {self.summary()}", *self._notes()]),
            body,
            more="more changed (str() or .to_dataframe() shows every row)",
            max_lines=MAX_LINES - len(self._notes()),
        )

    def _repr_html_(self) -> str:
        ordered = [*self.changed(), *(r for r in self if r.action == "keep")]
        title = " | ".join([self.summary(), *self._notes()])
        return html_table(
            ("tag", "attribute", "action", "reason", "before (masked)", "after"),
            ((r.tag, r.path + r.keyword, r.action, r.reason, r.before, r.after) for r in ordered),
            title=title,
            warn=bool(self.refused or self.warning),
            total=len(ordered),
            note="changed attributes first; every row: .to_dataframe()",
        )


def burned_in_reason(ds: Dataset) -> str:
    """Why an instance counts as possibly carrying burned-in text ("" when it does not)."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES: the pixels may show identifying text"
    if flag and flag != "NO":
        return f"BurnedInAnnotation is {flag!r}, not NO"
    if not flag and modality in BURNED_IN_MODALITIES:
        return (
            f"BurnedInAnnotation is absent and modality {modality} often has text burned "
            "into the pixels"
        )
    return ""


def explain(ds: Dataset | str | os.PathLike[str], pseudonymizer: Pseudonymizer) -> Explanation:
    """Per attribute of ``ds``: the action, the reason, the value before (masked) and after.

    ``ds`` is a Dataset (not changed) or the path of a DICOM file. An instance the
    pseudonymizer would refuse (possible burned-in text under the ``refuse`` policy) is
    not raised: the explanation's ``refused`` says why and what to change, and its rows
    show what would happen were it allowed (the pixels are never cleaned).
    """
    if not isinstance(ds, Dataset):
        from pydicom import dcmread

        ds = dcmread(ds)
    rows = Explanation()
    why = burned_in_reason(ds)
    policy = pseudonymizer.profile.burned_in_policy
    if why and policy is BurnedInPolicy.REFUSE:
        rows.refused = (
            f"{why}; the burned-in policy 'refuse' rejects it. With burned_in_policy "
            "'warn' or 'allow' it would be written, pixels unchanged"
        )
        # Same key, permissive policy: only to show what the walk would do.
        profile = dataclasses.replace(pseudonymizer.profile, burned_in_policy=BurnedInPolicy.ALLOW)
        pseudonymizer = Pseudonymizer(pseudonymizer._secret, profile)
    elif why and policy is BurnedInPolicy.WARN:
        rows.warning = f"{why}; written with a warning, pixels unchanged"

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
