"""C-GET of a study holding more storage SOP classes than one association can propose.

An A-ASSOCIATE-RQ carries at most 128 presentation contexts (their IDs are the odd
numbers 1-255, PS3.8 9.3.2.2); the Q/R model takes one, so :data:`~.scu.MAX_STORAGE_CLASSES`
storage classes fit, one context each. A C-GET sub-operation can only arrive on a
context for its instance's class, so a study with more classes (private classes of
several vendors next to the standard ones) would end as "N of M failed". Instead its
instances are listed (C-FIND at IMAGE level: series, instance and class), the classes
taken in groups that fit, and for each group and series one C-GET names the group's
instances (SOPInstanceUID as a UID list, PS3.4 C.2.2.2.2) on an association proposing
that group's classes only. The final responses are added up into one, so the caller
judges the whole as it would one C-GET.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import TYPE_CHECKING

from pydicom import Dataset

from ..errors import NodeError
from . import scu
from .node import QueryLevel, QueryRoot
from .status import is_failure, is_pending, status_code

if TYPE_CHECKING:
    from .dimse import DimseNode

__all__ = ["Group", "plan_groups", "receive_groups"]

log = logging.getLogger(__name__)

#: Instances named by one C-GET of a group (keeps the identifier a few tens of kB).
UIDS_PER_REQUEST = 500
#: The storage classes to propose and the identifier of one C-GET.
Group = tuple[tuple[str, ...], Dataset]


def plan_groups(
    node: DimseNode, query: Dataset, per_association: int = scu.MAX_STORAGE_CLASSES
) -> list[Group]:
    """The C-GETs that fetch what ``query`` names, ``per_association`` classes each;
    empty when the server does not list the instances (the caller then proposes what
    fits and reports the rest as failed, as before)."""
    study = str(query.get("StudyInstanceUID", "") or "")
    wanted = Dataset()
    wanted.StudyInstanceUID = study
    wanted.SeriesInstanceUID = str(query.get("SeriesInstanceUID", "") or "")
    wanted.SOPInstanceUID = query.get("SOPInstanceUID", "") or ""
    wanted.SOPClassUID = ""
    by_class: dict[str, dict[str, list[str]]] = {}
    try:
        for match in node.find(QueryLevel.IMAGE, wanted, root=QueryRoot.STUDY):
            sop_class = str(match.get("SOPClassUID", "") or "")
            series = str(match.get("SeriesInstanceUID", "") or "")
            instance = str(match.get("SOPInstanceUID", "") or "")
            if sop_class and series and instance:
                by_class.setdefault(sop_class, {}).setdefault(series, []).append(instance)
    except NodeError as exc:
        log.debug("%s: instances of a study not listed (%s)", node.name, exc.detail)
        return []
    classes = list(by_class)
    groups: list[Group] = []
    for at in range(0, len(classes), per_association):
        chosen = tuple(classes[at : at + per_association])
        series_instances: dict[str, list[str]] = {}
        for sop_class in chosen:
            for series, instances in by_class[sop_class].items():
                series_instances.setdefault(series, []).extend(instances)
        for series, instances in series_instances.items():
            for start in range(0, len(instances), UIDS_PER_REQUEST):
                identifier = Dataset()
                if "PatientID" in query:
                    identifier.PatientID = query.PatientID
                identifier.StudyInstanceUID = study
                identifier.SeriesInstanceUID = series
                identifier.SOPInstanceUID = instances[start : start + UIDS_PER_REQUEST]
                identifier.QueryRetrieveLevel = QueryLevel.IMAGE.value
                groups.append((chosen, identifier))
    return groups


def receive_groups(
    node: DimseNode, groups: list[Group], model: str, root: str
) -> Generator[bytes, None, Dataset]:
    """Run the planned C-GETs one after another (one association each, in the
    caller's slot); yield every instance; return one final response: the counts added
    up; the first failure's status (and comment), else the first warning's, else
    success."""
    completed = failed = warning = 0
    status, comment = 0, ""
    for classes, identifier in groups:
        final = yield from scu.receive(node, identifier, model, root, classes)
        code = status_code(final)
        completed += int(final.get("NumberOfCompletedSuboperations", 0) or 0)
        failed += int(final.get("NumberOfFailedSuboperations", 0) or 0)
        warning += int(final.get("NumberOfWarningSuboperations", 0) or 0)
        worse = is_failure(code) and not is_failure(status) if status else code != 0
        if worse and not is_pending(code):
            status, comment = code, str(final.get("ErrorComment", "") or "")
    total = Dataset()
    total.Status = status
    total.NumberOfCompletedSuboperations = completed
    total.NumberOfFailedSuboperations = failed
    total.NumberOfWarningSuboperations = warning
    if comment:
        total.ErrorComment = comment
    return total
