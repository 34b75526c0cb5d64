"""Compile a :class:`~.profile.Profile` and Table E.1-1 into one tag → action dict.

Compilation happens once per profile, so pseudonymizing a dataset is a single walk with a
dict lookup per element. Every compiled action is one of D, Z, X, K, C, U (compound
actions resolved, option columns merged) and carries the reason it was chosen, which is
what :func:`~.explain.explain` shows.

Beyond the table, for safety: person names (PN) not listed are replaced by a dummy, UIDs
not listed are remapped unless they name a class, syntax or coding scheme, and dates and
times not listed follow the date options (kept, shifted or removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import DicomDictionary, keyword_for_tag

from .profile import Option, Profile
from .table import Action, TableRow, load_table

__all__ = [
    "DEFINITION_UIDS",
    "DEFINITION_UID_SUFFIXES",
    "Rule",
    "Rules",
    "compile_rules",
    "describe_tag",
]

_K, _C, _X, _Z, _D, _U = (
    Action.KEEP,
    Action.CLEAN,
    Action.REMOVE,
    Action.ZERO,
    Action.DUMMY,
    Action.UID,
)

#: UI attributes that name a definition, not an instance: never remapped.
DEFINITION_UID_SUFFIXES = ("ClassUID", "SyntaxUID")
DEFINITION_UIDS = frozenset(
    {
        "CodingSchemeUID",
        "ContextUID",
        "MappingResourceUID",
        "PrivateInformationCreatorUID",
    }
)


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled action and why it applies (``"basic"``, an option column, ``"keep"``…)."""

    action: Action
    reason: str


@lru_cache(maxsize=1)
def _dictionary_by_vr() -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """(PN tags, remappable UI tags, DA/DT/TM tags) of the data dictionary."""
    pn, ui, dates = set(), set(), set()
    for tag, entry in DicomDictionary.items():
        vr = entry[0]
        if vr == "PN":
            pn.add(tag)
        elif vr == "UI":
            keyword = entry[4]
            if not keyword.endswith(DEFINITION_UID_SUFFIXES) and keyword not in DEFINITION_UIDS:
                ui.add(tag)
        elif vr in ("DA", "DT", "TM"):
            dates.add(tag)
    return frozenset(pn), frozenset(ui), frozenset(dates)


def _row_rule(row: TableRow, profile: Profile) -> Rule:
    claimed = [
        (col, row.options[col])
        for option in profile.options.members()
        if (col := option.column) is not None and col in row.options
    ]
    if not claimed:
        return Rule(row.basic.resolved, "basic")
    # Shifted dates must stay consistent with each other, so the modified-dates column
    # wins over another option that would keep one of them verbatim.
    for col, action in claimed:
        if col == "modified_dates":
            return Rule(action.resolved, col)
    for wanted in (_K, _C):
        for col, action in claimed:
            if action.resolved is wanted:
                return Rule(wanted, col)
    col, action = claimed[0]
    return Rule(action.resolved, col)


@dataclass(frozen=True)
class Rules:
    """The compiled profile: per-tag rules and the defaults for everything else."""

    by_tag: dict[int, Rule]
    curve: Rule
    overlay: Rule
    private: Rule
    safe_private: frozenset[tuple[str, int, int]]
    unlisted_pn: Rule
    unlisted_uid: Rule
    unlisted_date: Rule
    shift_dates: bool
    keep: frozenset[int] = field(default_factory=frozenset)

    def rule_for(self, tag: int) -> Rule:
        """The rule for a standard (even-group, non-repeating) tag."""
        rule = self.by_tag.get(tag)
        if rule is not None:
            return rule
        pn, ui, dates = _dictionary_by_vr()
        if tag in pn:
            return self.unlisted_pn
        if tag in ui:
            return self.unlisted_uid
        if tag in dates:
            return self.unlisted_date
        return _KEEP_UNLISTED


_KEEP_UNLISTED = Rule(_K, "not in table")


def compile_rules(profile: Profile) -> Rules:
    """Compile ``profile`` against the packaged Table E.1-1."""
    by_tag: dict[int, Rule] = {}
    patterns: dict[str, Rule] = {}
    for row in load_table():
        rule = _row_rule(row, profile)
        if row.is_pattern:
            patterns[row.tag] = rule
        else:
            by_tag[row.tag_int] = rule
    from pydicom.datadict import tag_for_keyword

    keep_tags = frozenset(t for k in profile.keep if (t := tag_for_keyword(k)) is not None)
    for tag in keep_tags:
        by_tag[tag] = Rule(_K, "keep")
    options = profile.options
    if Option.RETAIN_LONG_FULL_DATES in options:
        unlisted_date = Rule(_K, "full_dates")
    elif Option.RETAIN_LONG_MODIFIED_DATES in options:
        unlisted_date = Rule(_C, "modified_dates")
    else:
        unlisted_date = Rule(_X, "unlisted date")
    unlisted_uid = Rule(_K, "uids") if Option.RETAIN_UIDS in options else Rule(_U, "unlisted UID")
    private = patterns["ggggeeee"]
    safe = frozenset(
        (s.creator.strip(), s.group, s.element)
        for s in (profile.safe_private if Option.RETAIN_SAFE_PRIVATE in options else ())
    )
    return Rules(
        by_tag=by_tag,
        curve=patterns["50xxxxxx"],
        overlay=patterns["60xx3000"],
        private=private,
        safe_private=safe,
        unlisted_pn=Rule(_D, "unlisted name"),
        unlisted_uid=unlisted_uid,
        unlisted_date=unlisted_date,
        shift_dates=Option.RETAIN_LONG_MODIFIED_DATES in options,
        keep=keep_tags,
    )


def describe_tag(tag: int) -> str:
    """Keyword of a tag, or ``(gggg,eeee)`` when it has none."""
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
