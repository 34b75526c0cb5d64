"""What a transfer has to do: the expected instances, what is excluded, what is left.

The plan comes from the source's own answers, so "expected" is what the source says it
holds, not what happened to arrive: the series-level query's instance counts, and the
instance-level query wherever the instances must be named (a destination that already
holds some, a count missing, or a count that disagrees with what arrived).
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
from .defaults import STREAM_CHUNK
from .worker import Stream

__all__ = [
    "SeriesPlan",
    "TransferPlan",
    "find_series",
    "list_instances",
    "mark_existing",
    "mark_whole",
    "output_uid",
    "streams_for",
]


def output_uid(pseudonymizer: Pseudonymizer | None, uid: str) -> str:
    """The UID an instance will have at the destination."""
    if pseudonymizer is None or Option.RETAIN_UIDS in pseudonymizer.profile.options:
        return uid
    return pseudonymizer.uid(uid)


@dataclass
class SeriesPlan:
    """One series: its instances at the source and which still need delivering.

    ``instances`` is None until the instance-level query has answered; meanwhile a
    ``whole`` series is fetched in full (a fresh destination needs everything anyway).
    """

    uid: str
    modality: str
    count: int = 0
    instances: list[str] | None = None
    todo: list[str] = field(default_factory=list)
    whole: bool = False
    excluded: bool = False

    @property
    def expected(self) -> int:
        """Instances at the source: listed, or as the series-level query counted them."""
        return len(self.instances) if self.instances is not None else self.count


@dataclass
class TransferPlan:
    """The series of the request, with the counts the result reports."""

    study_uid: str
    series: list[SeriesPlan]
    skipped: int = 0

    @property
    def expected(self) -> int:
        """Instances the source holds for the request (excluded ones included)."""
        return sum(s.expected for s in self.series)

    @property
    def excluded(self) -> int:
        """Instances left out by modality."""
        return sum(s.expected for s in self.series if s.excluded)

    @property
    def todo(self) -> list[str]:
        """Source SOP Instance UIDs known to be still missing (whole series aside)."""
        return [uid for s in self.series for uid in s.todo]

    @property
    def pending(self) -> int:
        """Instances still to deliver, whole series counted by their expected size."""
        return sum(s.expected if s.whole else len(s.todo) for s in self.series)

    @property
    def listed(self) -> bool:
        """Whether every series' instances are known."""
        return all(s.instances is not None for s in self.series)

    @property
    def modalities(self) -> set[str]:
        """Modalities of the delivered series (they name ADIT's study folder)."""
        return {s.modality for s in self.series if not s.excluded and s.modality}


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def find_series(
    source: Any,
    study_uid: str,
    series_uids: Iterable[str] | None,
    exclude: frozenset[str],
) -> TransferPlan:
    """Ask ``source`` which series the request covers (instances not listed yet)."""
    if not study_uid:
        raise InputError("a transfer needs a StudyInstanceUID")
    wanted = {str(u) for u in series_uids} if series_uids else None
    query = Dataset()
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.NumberOfSeriesRelatedInstances = ""
    plans: dict[str, SeriesPlan] = {}
    for ds in source.find("SERIES", query):
        uid = _str(ds, "SeriesInstanceUID")
        if uid and (wanted is None or uid in wanted):
            modality = _str(ds, "Modality").upper()
            count = _str(ds, "NumberOfSeriesRelatedInstances")
            plans[uid] = SeriesPlan(
                uid, modality, int(count) if count.isdigit() else 0, excluded=modality in exclude
            )
    return TransferPlan(study_uid, list(plans.values()))


def list_instances(source: Any, plan: TransferPlan) -> None:
    """Fill in each series' instances from one instance-level query (the expected set)."""
    query = Dataset()
    query.StudyInstanceUID = plan.study_uid
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    found: dict[str, set[str]] = {s.uid: set() for s in plan.series}
    for ds in source.find("IMAGE", query):
        series_uid, sop = _str(ds, "SeriesInstanceUID"), _str(ds, "SOPInstanceUID")
        if sop and series_uid in found:
            found[series_uid].add(sop)
    for series in plan.series:
        series.instances = sorted(found[series.uid])


def mark_existing(
    plan: TransferPlan, existing: set[str], pseudonymizer: Pseudonymizer | None
) -> None:
    """Fill each series' to-do list with what the destination does not hold yet."""
    plan.skipped = 0
    for series in plan.series:
        series.whole = False
        if series.excluded or series.instances is None:
            series.todo = []
            continue
        series.todo = [u for u in series.instances if output_uid(pseudonymizer, u) not in existing]
        plan.skipped += len(series.instances) - len(series.todo)


def mark_whole(plan: TransferPlan) -> None:
    """A fresh destination: every included series is fetched in full."""
    for series in plan.series:
        series.whole = not series.excluded
        series.todo = []


def streams_for(
    plan: TransferPlan, method: str, streams: int, *, min_chunk: int = STREAM_CHUNK
) -> (
    list[Stream]
):  # fmt: skip
    """Fetch streams: whole series where all is to do, else instance lists.

    When a study has fewer series than streams may run and its instances are listed
    (a resumed transfer), C-GET splits its largest series into instance lists so that
    every allowed stream (and core) has work. WADO-RS does not: an instance list is a
    request per instance, dearer at the PACS than the second core gains.
    """
    pieces: list[tuple[str, list[str], bool]] = []
    for series in plan.series:
        if series.whole:  # instances may not be listed yet: then it cannot be split
            pieces.append((series.uid, list(series.instances or ()), True))
        elif series.todo:
            whole = len(series.todo) == len(series.instances or ())
            pieces.append((series.uid, list(series.todo), whole))
    if len(pieces) < streams and method == "cget":
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
