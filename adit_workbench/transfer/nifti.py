"""NIfTI destination: dcm2niix per series, as ADIT converts (SR, KO and PR are skipped).

Instances of a series are staged together; when the transfer finishes, dcm2niix converts
each series into a temporary folder (``-z y``: gzipped, ``-b y``: JSON sidecar, which
dcm2niix anonymizes by default) and the results are renamed into place, so a reader never
sees half a volume. A marker per converted series lists its instances: a re-run skips
the series, the way other destinations skip instances they hold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .defaults import NIFTI_EXCLUDED
from .destinations import job_root, new_staging
from .layout import InstanceInfo, Placement, sanitize, series_folder, study_folder

__all__ = ["NiftiDestination"]


@dataclass
class NiftiDestination:
    """NIfTI files by dcm2niix, one conversion per series (SR/KO/PR are skipped).

    ``<path>/<job folder>/<patient>/<study folder>/<SeriesNumber>-<Description>.nii.gz``
    plus dcm2niix's JSON sidecar. A series counts as delivered once converted; a marker
    under ``.wb-nifti`` lists its instances, so that a re-run skips it.
    """

    path: Path
    folder_name: str | None = None
    dcm2niix: str = "dcm2niix"

    def open(self, study_modalities: Iterable[str], settings: Any) -> _NiftiSink:
        """The sink for one transfer."""
        if shutil.which(self.dcm2niix) is None:
            raise InputError(f"{self.dcm2niix} is not installed (Debian package dcm2niix)")
        return _NiftiSink(
            job_root(Path(self.path), self.folder_name), self.dcm2niix, study_modalities
        )


class _NiftiSink:
    placement: Placement | None = None

    def __init__(self, root: Path, tool: str, modalities: Iterable[str]) -> None:
        self.root = root
        self.tool = tool
        self.modalities = set(modalities)
        self.where = str(root)
        self.staging = new_staging(root)
        self.failed: dict[str, str] = {}
        self.markers = root / ".wb-nifti"
        self.series: dict[str, list[InstanceInfo]] = {}
        self.warnings: list[str] = []

    def existing(self) -> set[str]:
        found: set[str] = set()
        if self.markers.is_dir():
            for marker in self.markers.iterdir():
                found.update(marker.read_text().split())
        return found

    def put(self, info: InstanceInfo) -> int:
        if info.modality in NIFTI_EXCLUDED:
            os.unlink(info.staged)
            self.failed[info.sop_uid] = f"{info.modality} is not converted to NIfTI"
            return 0
        folder = self.staging / sanitize(info.series_uid, "series")
        folder.mkdir(exist_ok=True)
        staged = folder / Path(info.staged).name
        os.replace(info.staged, staged)
        self.series.setdefault(info.series_uid, []).append(info)
        return 0

    def finish(self) -> None:
        for uid, infos in self.series.items():
            self._convert(uid, infos)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _convert(self, uid: str, infos: list[InstanceInfo]) -> None:
        first = infos[0]
        out = (
            self.root
            / sanitize(first.patient_id, "UnknownPatient")
            / study_folder(first.study_date, first.study_time, self.modalities)
        )
        tmp = Path(tempfile.mkdtemp(dir=self.staging, prefix="out-"))
        name = series_folder(first.series_number, first.series_description, uid, first.modality)
        series_dir = self.staging / sanitize(uid, "series")
        run = subprocess.run(
            [self.tool, "-f", name, "-z", "y", "-b", "y", "-o", str(tmp), str(series_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        produced = [p for p in tmp.iterdir() if p.is_file()]
        if run.returncode not in (0, 2) or not any(p.name.endswith(".nii.gz") for p in produced):
            # 2 is "no valid DICOM found" (e.g. no pixel data): a warning as in ADIT.
            for info in infos:
                self.failed[info.sop_uid] = f"dcm2niix exit code {run.returncode}"
            return
        out.mkdir(parents=True, exist_ok=True)
        for path in produced:
            os.replace(path, out / path.name)
        self.markers.mkdir(exist_ok=True)
        marker = self.markers / f"{sanitize(uid, 'series')}.txt"
        tmp_marker = marker.with_suffix(".part")
        tmp_marker.write_text("\n".join(i.sop_uid for i in infos) + "\n")
        os.replace(tmp_marker, marker)

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
