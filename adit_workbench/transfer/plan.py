"""What a transfer has to do: the expected instances, what is excluded, what is left.

The plan comes from the source's own answers (a series-level and an instance-level
query), so "expected" is what the source says it holds, not what happened to arrive.
UIDs at the destination are predicted, not read back: pseudonymized UIDs are keyed
functions of the originals, so the plan knows each instance's delivered SOP Instance
UID before fetching anything, and a re-run fetches only what the destination lacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset

from ..deid import Option, Pseudonymizer
from ..errors import InputError
from .worker import Stream

__all__ = ["SeriesPlan", "TransferPlan", "make_plan", "output_uid", "streams_for"]


def output_uid(pseudonymizer: Pseudonymizer | None, uid: str) -> str:
    """The UID an instance will have at the destination."""
    if pseudonymizer is None or Option.RETAIN_UIDS in pseudonymizer.profile.options:
        return uid
    return pseudonymizer.uid(uid)


@dataclass
class SeriesPlan:
    """One series: its instances at the source and which still need delivering."""

    uid: str
    modality: str
    instances: list[str]
    todo: list[str] = field(default_factory=list)
    excluded: bool = False


@dataclass
class TransferPlan:
    """The series of the request, with the counts the result reports."""

    study_uid: str
    series: list[SeriesPlan]
    skipped: int = 0

    @property
    def expected(self) -> int:
        """Instances the source holds for the request (excluded ones included)."""
        return sum(len(s.instances) for s in self.series)

    @property
    def excluded(self) -> int:
        """Instances left out by modality."""
        return sum(len(s.instances) for s in self.series if s.excluded)

    @property
    def todo(self) -> list[str]:
        """Source SOP Instance UIDs still to deliver."""
        return [uid for s in self.series for uid in s.todo]

    @property
    def modalities(self) -> set[str]:
        """Modalities of the delivered series (they name ADIT's study folder)."""
        return {s.modality for s in self.series if not s.excluded and s.modality}


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def make_plan(
    source: Any,
    study_uid: str,
    series_uids: Iterable[str] | None,
    exclude: frozenset[str],
) -> TransferPlan:
    """Ask ``source`` which series and instances the request covers."""
    if not study_uid:
        raise InputError("a transfer needs a StudyInstanceUID")
    wanted = {str(u) for u in series_uids} if series_uids else None
    query = Dataset()
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    modality: dict[str, str] = {}
    for ds in source.find("SERIES", query):
        uid = _str(ds, "SeriesInstanceUID")
        if uid and (wanted is None or uid in wanted):
            modality[uid] = _str(ds, "Modality").upper()
    query = Dataset()
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    instances: dict[str, list[str]] = {uid: [] for uid in modality}
    for ds in source.find("IMAGE", query):
        series = _str(ds, "SeriesInstanceUID")
        sop = _str(ds, "SOPInstanceUID")
        if sop and series in instances:
            instances[series].append(sop)
    plans = [
        SeriesPlan(uid, modality[uid], sorted(set(sops)), excluded=modality[uid] in exclude)
        for uid, sops in instances.items()
    ]
    return TransferPlan(study_uid, plans)


def mark_existing(
    plan: TransferPlan, existing: set[str], pseudonymizer: Pseudonymizer | None
) -> None:
    """Fill each series' to-do list with what the destination does not hold yet."""
    plan.skipped = 0
    for series in plan.series:
        if series.excluded:
            series.todo = []
            continue
        series.todo = [u for u in series.instances if output_uid(pseudonymizer, u) not in existing]
        plan.skipped += len(series.instances) - len(series.todo)


def streams_for(plan: TransferPlan, method: str, streams: int, *, min_chunk: int = 16) -> (
    list[Stream]
):  # fmt: skip
    """Fetch streams: whole series where all is to do, else instance lists.

    When a study has fewer series than streams may run, its largest series are split
    into instance lists so that every allowed stream (and core) has work.
    """
    pieces: list[tuple[str, list[str], bool]] = []
    for series in plan.series:
        if not series.todo:
            continue
        whole = len(series.todo) == len(series.instances)
        pieces.append((series.uid, list(series.todo), whole))
    if len(pieces) < streams:
        total = sum(len(p[1]) for p in pieces)
        per = max(min_chunk, math.ceil(total / max(1, streams)))
        split: list[tuple[str, list[str], bool]] = []
        for uid, sops, whole in pieces:
            if len(sops) >= 2 * per:
                split += [(uid, sops[i : i + per], False) for i in range(0, len(sops), per)]
            else:
                split.append((uid, sops, whole))
        pieces = split
    result = []
    for uid, sops, whole in pieces:
        if whole:
            result.append(Stream(0, method, plan.study_uid, uid))
            continue
        for start in range(0, len(sops), 256):  # bounded identifiers / URL counts
            result.append(Stream(0, method, plan.study_uid, uid, tuple(sops[start : start + 256])))
    return result
