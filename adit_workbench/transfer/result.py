"""What a transfer reports: progress while it runs, a result when it ends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import TransferIncomplete

__all__ = ["TransferProgress", "TransferResult", "TransferStatus", "count_by_modality"]


class TransferStatus(StrEnum):
    """Outcome of a transfer (the job layer stores the value)."""

    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILURE = "FAILURE"


@dataclass(frozen=True)
class TransferProgress:
    """A snapshot handed to the progress callback after each delivered instance.

    ``instances_total`` is the expected count (from an instance-level query) minus what
    the destination already held; ``bytes_total`` is None when the source does not say.
    """

    instances_done: int
    instances_total: int
    bytes_done: int
    bytes_total: int | None = None
    phase: str = "transfer"

    @property
    def fraction(self) -> float:
        """Share done, 0.0-1.0 (1.0 when nothing was left to do)."""
        if self.instances_total <= 0:
            return 1.0
        return min(1.0, self.instances_done / self.instances_total)


@dataclass
class TransferResult:
    """What a transfer did.

    Attributes
    ----------
    expected:
        Instances the source holds for the request (instance-level query).
    delivered:
        Instances delivered by this run.
    skipped:
        Instances the destination already held (an earlier, interrupted run).
    excluded:
        Instances left out by modality (SR/PR/KO when pseudonymizing, by default).
    refused:
        Instances the burned-in guard refused to pseudonymize.
    failed:
        Instances fetched but not delivered (refused by the destination, unreadable).
    bytes:
        Bytes delivered (after manipulation).
    status, message:
        SUCCESS, WARNING (some missing, refused or excluded by the guard) or FAILURE.
    where:
        The destination: a node name, folder, archive path.
    via:
        The fetch method used (``cget``, ``cmove``, ``wado``, ``folder``, ``direct-move``).
    modalities:
        Instances delivered per modality (``{"CT": 120, "MR": 30}``), for the jobs chart.
    """

    expected: int = 0
    delivered: int = 0
    skipped: int = 0
    excluded: int = 0
    refused: int = 0
    failed: int = 0
    bytes: int = 0
    status: TransferStatus = TransferStatus.SUCCESS
    message: str = ""
    where: str = ""
    via: str = ""
    retriable: bool = False
    failures: dict[str, str] = field(default_factory=dict, repr=False)
    modalities: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def missing(self) -> int:
        """Expected instances neither delivered, already there, excluded nor refused."""
        accounted = self.delivered + self.skipped + self.excluded + self.refused
        return max(0, self.expected - accounted)

    def raise_for_status(self) -> TransferResult:
        """Raise :class:`~adit_workbench.errors.TransferIncomplete` on FAILURE.

        The error's ``retriable`` is this result's: nothing arrived but trying again
        later may work (a server down), or it will not (e.g. every instance refused).
        """
        if self.status is TransferStatus.FAILURE:
            raise TransferIncomplete(f"transfer to {self.where} failed: {self.message}",
                                     retriable=self.retriable)  # fmt: skip
        return self

    @property
    def ok(self) -> bool:
        """True unless the transfer failed."""
        return self.status is not TransferStatus.FAILURE

    def __str__(self) -> str:
        parts = [f"{self.status.value}: {self.delivered} delivered"]
        if self.skipped:
            parts.append(f"{self.skipped} already there")
        if self.excluded:
            parts.append(f"{self.excluded} excluded")
        if self.refused:
            parts.append(f"{self.refused} refused (burned-in)")
        if self.missing:
            parts.append(f"{self.missing} missing")
        text = ", ".join(parts) + f" of {self.expected} to {self.where} via {self.via}"
        return f"{text} ({self.message})" if self.message else text


def count_by_modality(series: Iterable[Any], delivered: Set[str]) -> dict[str, int]:
    """Delivered instances per modality, from a transfer plan's series.

    A series whose instances were listed counts those among ``delivered`` (source SOP
    Instance UIDs); a series fetched whole without a listing counts as the source said
    (it was listed only when what arrived disagreed). Excluded series count nothing.
    """
    counts: Counter[str] = Counter()
    for item in series:
        if item.excluded:
            continue
        listed = item.instances
        n = item.expected if listed is None else sum(1 for uid in listed if uid in delivered)
        if n:
            counts[item.modality or ""] += n
    return dict(counts)
