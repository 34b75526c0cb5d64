"""ADIT's folder layout, with every path part sanitized.

``<root>/<job folder>/<pseudonym or PatientID>/<YYYYMMDD-HHMMSS-MODALITIES>/
<SeriesNumber>-<SeriesDescription>/<SOPInstanceUID>.dcm`` — the layout researchers'
scripts already expect from ADIT. Values come from the *delivered* instance (after
pseudonymization), so a cleaned description or a pseudonym is what names the folder.
A part can never climb out of its parent: separators, ``..``, control characters and a
leading dot (our staging folders are hidden) are all replaced.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..dicom.paths import component, uid_component, within

__all__ = [
    "InstanceInfo",
    "Placement",
    "instance_name",
    "relative_path",
    "sanitize",
    "series_folder",
    "study_folder",
]


def sanitize(part: object, fallback: str = "Undefined") -> str:
    """One safe, readable path component (see :func:`~..dicom.paths.component`).

    ADIT replaces ``<>:"/\\|?*`` and control characters with ``_``; we also refuse
    ``.``/``..``, leading dots and Windows device names and cap the length, so a
    crafted SeriesDescription cannot escape the destination or hide a file. Values that
    identify an instance use :func:`~..dicom.paths.component`'s unique form instead.
    """
    return component(part, fallback, unique=False)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What the pipeline knows of one prepared (delivered-to-be) instance.

    ``source_sop`` is the SOP Instance UID at the source; the other UIDs are those of
    the delivered instance. ``staged`` is the prepared Part-10 file awaiting delivery.
    """

    source_sop: str
    sop_uid: str
    sop_class: str
    series_uid: str
    study_uid: str
    patient_id: str
    modality: str
    series_number: str
    series_description: str
    study_date: str
    study_time: str
    staged: str
    size: int
    #: Already at its place in a folder destination (a worker delivered it).
    placed: bool = False


def study_folder(date: str, time: str, modalities: Iterable[str]) -> str:
    """``YYYYMMDD-HHMMSS-CT,MR`` (ADIT's study folder name), sanitized."""
    digits = re.sub(r"\D", "", time.split(".")[0])[:6].ljust(6, "0")
    day = re.sub(r"\D", "", date)[:8] or "00000000"
    mods = ",".join(sorted({m for m in modalities if m}))
    return sanitize(f"{day}-{digits}-{mods}" if mods else f"{day}-{digits}")


def series_folder(number: str, description: str, series_uid: str, modality: str = "") -> str:
    """``<SeriesNumber>-<SeriesDescription>``; the Series UID when there is no number.

    A description the profile removed gives way to the modality (``3-CT``, not
    ``3-Undefined``): the folder stays informative after pseudonymization.
    """
    if not str(number).strip():
        return sanitize(series_uid, "series")
    text = str(description).strip() or str(modality).strip()
    return sanitize(f"{str(number).strip()}-{sanitize(text)}")


def relative_path(info: InstanceInfo, study_modalities: Iterable[str]) -> PurePosixPath:
    """The path of ``info`` below the job folder."""
    folder = _folder(info.patient_id, info.study_date, info.study_time,
                     tuple(sorted(set(study_modalities))), info.series_number,
                     info.series_description, info.series_uid, info.modality)  # fmt: skip
    return folder / instance_name(info.sop_uid)


def instance_name(sop_uid: str) -> str:
    """The file name of an instance: its (delivered) SOP Instance UID, made safe.

    Two distinct UIDs never share a name (see :func:`~..dicom.paths.component`), and
    the same UID always gives the same one, so a re-run finds what is already there.
    """
    return f"{uid_component(sop_uid, 'instance')}.dcm"


@functools.lru_cache(maxsize=1024)
def _folder(
    patient_id: str,
    date: str,
    time: str,
    modalities: tuple[str, ...],
    number: str,
    description: str,
    series_uid: str,
    modality: str = "",
) -> PurePosixPath:
    """The series folder: the same for every instance of a series, so computed once."""
    return PurePosixPath(
        component(patient_id, "UnknownPatient"),
        study_folder(date, time, modalities),
        series_folder(number, description, series_uid, modality),
    )


@dataclass(frozen=True, slots=True)
class Placement:
    """Lets a worker process deliver into a folder destination itself.

    A worker that renames its own prepared files into place never contends for a
    directory with another process (the parent renaming out of a shared staging
    folder made file creation ten times dearer), and the parent does no file work.
    """

    root: str
    modalities: tuple[str, ...]
    #: Folders already checked to lie below ``root`` (resolving costs a few syscalls).
    _checked: set[PurePosixPath] = field(default_factory=set, compare=False, repr=False)

    def path_for(self, info: InstanceInfo) -> Path:
        """Where ``info`` belongs in the destination (checked to stay below ``root``)."""
        rel = relative_path(info, self.modalities)
        if rel.parent not in self._checked:
            within(self.root, rel.parent)
            self._checked.add(rel.parent)
        return Path(self.root, rel)
