"""PS3.15 Table E.1-1 and the safe-private allow-list, loaded from packaged JSON.

The rules of de-identification are data, not code: ``table_e1_1.json`` holds one row per
attribute of Table E.1-1 (tag or repeating-group pattern, keyword, name, the Basic Profile
action and the action of each retain/clean option that changes it), ``safe_private.json``
the private elements known to be safe. Both are validated when loaded so that a bad edit
fails at import of the first profile, not halfway through a transfer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "COLUMNS",
    "Action",
    "SafePrivate",
    "TableRow",
    "load_safe_private",
    "load_table",
]

#: Option columns of Table E.1-1, in the order of the standard.
COLUMNS: tuple[str, ...] = (
    "safe_private",
    "uids",
    "device",
    "institution",
    "patient",
    "full_dates",
    "modified_dates",
    "descriptors",
    "structured_content",
    "graphics",
)


class Action(StrEnum):
    """Action codes of Table E.1-1 (PS3.15 E.1.1), the compound ones included."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    ZERO_OR_DUMMY = "Z/D"
    REMOVE_OR_ZERO = "X/Z"
    REMOVE_OR_DUMMY = "X/D"
    REMOVE_OR_ZERO_OR_DUMMY = "X/Z/D"
    REMOVE_OR_ZERO_OR_UID = "X/Z/U*"

    @property
    def resolved(self) -> Action:
        """The single action applied for a compound one.

        The standard picks the first action unless the IOD makes the attribute Type 1 or
        2. Without IOD tables at hand the last (most conservative for validity) action is
        taken: the attribute stays present with an empty, dummy or remapped value, which is
        never identifying and never breaks an IOD that requires it.
        """
        return Action(self.value.split("/")[-1].rstrip("*"))


@dataclass(frozen=True, slots=True)
class TableRow:
    """One attribute of Table E.1-1.

    ``tag`` is eight hex digits, or a pattern with ``x`` for the repeating groups (curves
    ``50xxxxxx``, overlays ``60xx3000``) and ``ggggeeee`` for all private attributes.
    """

    tag: str
    keyword: str | None
    name: str
    vr: str | None
    basic: Action
    options: Mapping[str, Action]

    @property
    def is_pattern(self) -> bool:
        """True for the repeating-group and private rows."""
        return not all(c in "0123456789ABCDEF" for c in self.tag)

    @property
    def tag_int(self) -> int:
        """The tag as an int (only for rows that are not patterns)."""
        return int(self.tag, 16)

    def action_for(self, column: str) -> Action | None:
        """The option column's action, or None when the option leaves the row alone."""
        return self.options.get(column)


@dataclass(frozen=True, slots=True)
class SafePrivate:
    """A private element safe to keep: its creator, group and element offset in the block."""

    creator: str
    group: int
    element: int
    name: str = ""

    def __post_init__(self) -> None:
        if not self.group & 1 or not 0x0009 <= self.group <= 0xFFFF:
            raise ConfigurationError(f"safe private group {self.group:04X} is not private")
        if not 0 <= self.element <= 0xFF:
            raise ConfigurationError(f"safe private element offset {self.element:X} > FF")
        if not self.creator.strip():
            raise ConfigurationError("safe private entry without a creator")


def _read_json(name: str) -> Any:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


def _row(raw: Mapping[str, Any]) -> TableRow:
    tag = str(raw["tag"])
    if len(tag) != 8:
        raise ConfigurationError(f"Table E.1-1: bad tag {tag!r}")
    try:
        basic = Action(raw["basic"])
        options = {str(k): Action(v) for k, v in dict(raw.get("options", {})).items()}
    except ValueError as exc:
        raise ConfigurationError(f"Table E.1-1 row {tag}: {exc}") from exc
    unknown = set(options) - set(COLUMNS)
    if unknown:
        raise ConfigurationError(f"Table E.1-1 row {tag}: unknown columns {sorted(unknown)}")
    row = TableRow(
        tag=tag,
        keyword=raw.get("keyword"),
        name=str(raw["name"]),
        vr=raw.get("vr"),
        basic=basic,
        options=options,
    )
    if not row.is_pattern and row.keyword is None:
        raise ConfigurationError(f"Table E.1-1 row {tag}: a plain tag needs a keyword")
    return row


@lru_cache(maxsize=1)
def load_table() -> tuple[TableRow, ...]:
    """All rows of the packaged Table E.1-1, validated (cached per process)."""
    data = _read_json("table_e1_1.json")
    rows = tuple(_row(r) for r in data["rows"])
    tags = [r.tag for r in rows]
    if len(tags) != len(set(tags)):
        dupes = sorted({t for t in tags if tags.count(t) > 1})
        raise ConfigurationError(f"Table E.1-1: duplicate tags {dupes}")
    if tuple(data.get("columns", COLUMNS)) != COLUMNS:
        raise ConfigurationError("Table E.1-1: option columns differ from the loader's")
    return rows


@lru_cache(maxsize=1)
def load_safe_private() -> tuple[SafePrivate, ...]:
    """The packaged allow-list of safe private elements (validated, cached)."""
    data = _read_json("safe_private.json")
    return tuple(
        SafePrivate(
            creator=str(r["creator"]),
            group=int(r["group"], 16),
            element=int(r["element"], 16),
            name=str(r.get("name", "")),
        )
        for r in data["rows"]
    )
