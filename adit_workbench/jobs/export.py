"""Result tables of jobs: batch-query results and mass-transfer series, to CSV and Excel.

A batch-query export has one row per study (or series) found and one row per query that
found nothing or failed, with its batch-file line, status and message: failures are in
the file, not hidden behind it (an ADIT complaint). The file is a valid batch-transfer
file as it is: the transfer parser skips the failed rows and ignores the extra columns.
Excel cells are written as text so that leading zeros of IDs survive a round trip.

The mass-transfer pseudonym map (pseudonym ↔ PatientID, pseudonymized ↔ original UIDs)
is re-identifying: only users allowed to transfer unpseudonymized data (or staff) get it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..access import Permission
from ..cells import neutralize
from ..errors import InputError, PermissionDenied
from ..store.jobs import BatchQueryResult, Job, MassTransferVolume, Task

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Database
    from .service import JobManager

__all__ = [
    "BATCH_QUERY_EXPORT_COLUMNS",
    "BatchQueryResults",
    "MassTransferResults",
    "neutralize",
    "write_table",
]

BATCH_QUERY_EXPORT_COLUMNS = (
    "Line",
    "Pseudonym",
    "PatientID",
    "PatientName",
    "BirthDate",
    "ModalitiesInStudy",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "NumberOfStudyRelatedInstances",
    "AccessionNumber",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "Status",
    "Message",
)

MASS_COLUMNS = (
    "partition_key",
    "pseudonym",
    "study_instance_uid_pseudonymized",
    "series_instance_uid_pseudonymized",
    "modality",
    "study_description",
    "series_description",
    "series_number",
    "study_datetime",
    "institution_name",
    "number_of_images",
    "status",
)
MASS_IDENTIFYING = ("patient_id", "accession_number", "study_instance_uid", "series_instance_uid")


def write_table(frame: pd.DataFrame, path: str | Path, *, sheet: str = "results") -> Path:
    """Write ``frame`` to .csv (UTF-8) or .xlsx (every cell text); returns the path."""
    target = Path(path)
    suffix = target.suffix.lower()
    text = frame.astype(object).where(frame.notna(), "").astype(str)
    if suffix == ".csv":
        safe = text.map(neutralize)
        safe.columns = [neutralize(str(c)) for c in text.columns]
        safe.to_csv(target, index=False, encoding="utf-8")
    elif suffix == ".xlsx":
        from openpyxl import Workbook

        book = Workbook()
        ws = book.active
        assert ws is not None
        ws.title = sheet
        ws.append(list(text.columns))
        for row in text.itertuples(index=False):
            ws.append(list(row))
        for cells in ws.iter_rows(min_row=1):
            for cell in cells:
                cell.number_format = "@"  # text: Excel must not turn 00123 into 123
                cell.data_type = "s"
        book.save(target)
    else:
        raise InputError(f"export to .csv or .xlsx, not {suffix or '(no suffix)'}")
    return target


class BatchQueryResults:
    """What a batch query found, one row per study or series, failures included."""

    def __init__(self, database: Database, job_id: int) -> None:
        self._database = database
        self.job_id = job_id

    def rows(self) -> list[dict[str, Any]]:
        """The export rows in batch-file order."""
        out: list[dict[str, Any]] = []
        with self._database.session() as session:
            tasks = session.scalars(
                select(Task).where(Task.job_id == self.job_id).order_by(Task.id)
            )
            found: dict[int, list[BatchQueryResult]] = {}
            for r in session.scalars(
                select(BatchQueryResult)
                .where(BatchQueryResult.job_id == self.job_id)
                .order_by(BatchQueryResult.id)
            ):
                found.setdefault(r.task_id, []).append(r)
            for task in tasks:
                line = ",".join(map(str, task.lines))
                hits = found.get(task.id, [])
                for r in hits:
                    out.append(
                        {
                            "Line": line,
                            "Pseudonym": r.pseudonym,
                            "PatientID": r.patient_id,
                            "PatientName": r.patient_name,
                            "BirthDate": r.patient_birth_date,
                            "ModalitiesInStudy": r.modalities,
                            "StudyDate": r.study_date,
                            "StudyTime": r.study_time,
                            "StudyDescription": r.study_description,
                            "NumberOfStudyRelatedInstances": r.image_count,
                            "AccessionNumber": r.accession_number,
                            "StudyInstanceUID": r.study_uid,
                            "SeriesInstanceUID": r.series_uid,
                            "SeriesDescription": r.series_description,
                            "SeriesNumber": r.series_number,
                            "Status": task.status,
                            "Message": task.message,
                        }
                    )
                if not hits:
                    row = dict.fromkeys(BATCH_QUERY_EXPORT_COLUMNS, "")
                    row.update(
                        Line=line,
                        Pseudonym=task.pseudonym,
                        PatientID=task.patient_id,
                        Status=task.status if task.status != "SUCCESS" else "WARNING",
                        Message=task.message or "No studies found.",
                    )
                    out.append(row)
        return out

    @property
    def df(self) -> pd.DataFrame:
        """The results as a DataFrame (columns :data:`BATCH_QUERY_EXPORT_COLUMNS`)."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=list(BATCH_QUERY_EXPORT_COLUMNS))

    def __len__(self) -> int:
        return len(self.rows())

    def __repr__(self) -> str:
        from ..dicom.display import text_block

        rows = self.rows()
        lines = [f"{r['Line']:>5} {r['Status']:<8} {r['PatientID']} {r['StudyDate']} "
                 f"{r['ModalitiesInStudy']} {r['Message']}".rstrip() for r in rows]  # fmt: skip
        return text_block(f"BatchQueryResults of job {self.job_id}: {_counted(rows)}", lines,
                          max_lines=16)  # fmt: skip

    def _repr_html_(self) -> str:
        from ..dicom.display import html_table

        rows = self.rows()
        shown = ("Line", "Status", "PatientID", "StudyDate", "ModalitiesInStudy",
                 "StudyDescription", "AccessionNumber", "Message")  # fmt: skip
        return html_table(shown, ([r[c] for c in shown] for r in rows), total=len(rows),
                          title=f"BatchQueryResults of job {self.job_id}: {_counted(rows)}",
                          note="every column: .df; to a file: .export(path)")  # fmt: skip

    def to_csv(self, path: str | Path) -> Path:
        """Write a CSV file (UTF-8); usable directly as a batch-transfer file."""
        return write_table(self.df, path)

    def to_excel(self, path: str | Path) -> Path:
        """Write an .xlsx file with text cells; usable directly as a batch-transfer file."""
        return write_table(self.df, path)

    def export(self, path: str | Path) -> Path:
        """Write .csv or .xlsx by the suffix of ``path``."""
        return write_table(self.df, path)


def _counted(rows: list[dict[str, Any]]) -> str:
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[str(row["Status"])] = by_status.get(str(row["Status"]), 0) + 1
    return f"{len(rows)} rows (" + ", ".join(f"{n} {s}" for s, n in by_status.items()) + ")"


class MassTransferResults:
    """One row per series of a mass transfer, with its status."""

    def __init__(self, manager: JobManager, job_id: int) -> None:
        self._manager = manager
        self.job_id = job_id

    @property
    def df(self) -> pd.DataFrame:
        """Series rows without identifying columns."""
        return self.table()

    def table(self, *, identifying: bool = False) -> pd.DataFrame:
        """Series rows; ``identifying=True`` adds PatientID, accession and original UIDs
        (needs ``transfer_unpseudonymized`` or ``staff``; audited)."""
        import pandas as pd

        if identifying:
            self._require_map_rights()
        with self._manager.database.session() as session:
            vols = list(
                session.scalars(
                    select(MassTransferVolume)
                    .where(MassTransferVolume.job_id == self.job_id)
                    .order_by(MassTransferVolume.partition_key, MassTransferVolume.id)
                )
            )
        rows = []
        for v in vols:
            row = {
                "partition_key": v.partition_key,
                "pseudonym": v.pseudonym,
                "study_instance_uid_pseudonymized": v.study_uid_pseudonymized,
                "series_instance_uid_pseudonymized": v.series_uid_pseudonymized,
                "modality": v.modality,
                "study_description": v.study_description,
                "series_description": v.series_description,
                "series_number": v.series_number,
                "study_datetime": v.study_datetime,
                "institution_name": v.institution_name,
                "number_of_images": v.number_of_images,
                "status": v.status,
            }
            if identifying:
                row.update(
                    patient_id=v.patient_id,
                    accession_number=v.accession_number,
                    study_instance_uid=v.study_uid,
                    series_instance_uid=v.series_uid,
                )
            rows.append(row)
        columns = list(MASS_COLUMNS) + (list(MASS_IDENTIFYING) if identifying else [])
        return pd.DataFrame(rows, columns=columns)

    def _require_map_rights(self) -> None:
        access = self._manager.access
        if not (access.has(Permission.TRANSFER_UNPSEUDONYMIZED) or access.has(Permission.STAFF)):
            access.require(
                Permission.TRANSFER_UNPSEUDONYMIZED,
                action="job.pseudonym_map",
                details={"job": self.job_id},
            )
            raise PermissionDenied("the pseudonym map is for authorized users only")
        access.audit("job.pseudonym_map", details={"job": self.job_id})

    def pseudonym_map(self, path: str | Path) -> Path:
        """CSV of pseudonym ↔ PatientID and pseudonymized ↔ original UIDs (authorized only)."""
        frame = self.table(identifying=True)
        with self._manager.database.session() as session:
            job = session.get(Job, self.job_id)
        if job is not None and not job.pseudonymize:
            raise InputError(f"job {self.job_id} was not pseudonymized; there is no map")
        return write_table(frame, path)

    def export(self, path: str | Path) -> Path:
        """Write the series table (no identifying columns) to .csv or .xlsx."""
        return write_table(self.table(), path)
