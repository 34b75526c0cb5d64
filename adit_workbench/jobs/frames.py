"""DataFrames in: a (filtered) ``Results.df``, or any frame with the documented columns,
as the input of a transfer, a batch query or a batch transfer.

A frame is never guessed at: the columns it needs are named (DICOM keywords as in
``Results.df`` and in batch files; snake_case spellings are accepted too), and a frame
without them is refused with a message naming the missing ones. Batch frames become an
in-memory CSV and go through the batch-file parser, so that every row is validated
with the same rules (and line numbers: row 1 of the frame is line 2, as in a file).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .rules import BATCH_QUERY_COLUMNS, BATCH_TRANSFER_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["frame_as_batch", "frame_study_refs", "is_frame"]

#: Other spellings of the documented columns.
ALIASES = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "patient_birth_date": "PatientBirthDate",
    "birth_date": "PatientBirthDate",
    "accession_number": "AccessionNumber",
    "study_uid": "StudyInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "modality": "Modality",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "series_number": "SeriesNumber",
    "pseudonym": "Pseudonym",
    "from": "From",
    "until": "Until",
}


def is_frame(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame (without importing pandas)."""
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns")


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    renamed = {c: ALIASES.get(str(c).strip().lower(), str(c).strip()) for c in frame.columns}
    return frame.rename(columns=renamed)


def _has(frame: pd.DataFrame) -> str:
    shown = [str(c) for c in frame.columns[:12]]
    more = ", …" if len(frame.columns) > 12 else ""
    return f"it has: {', '.join(shown) or 'no columns'}{more}"


def frame_study_refs(frame: pd.DataFrame) -> list[tuple[str, str, str | None]]:
    """(PatientID, StudyInstanceUID, SeriesInstanceUID or None) per row of ``frame``."""
    frame = _normalised(frame)
    if "StudyInstanceUID" not in frame.columns:
        raise InputError(
            "a DataFrame to transfer needs the column StudyInstanceUID (and may have "
            f"PatientID and SeriesInstanceUID); {_has(frame)}"
        )
    if frame.empty:
        raise InputError("the DataFrame to transfer has no rows")
    refs = []
    for number, data in enumerate(frame.to_dict("records"), start=1):
        uid = _text(data.get("StudyInstanceUID"))
        if not uid:
            raise InputError(f"row {number} of the DataFrame has no StudyInstanceUID")
        series = _text(data.get("SeriesInstanceUID")) or None
        refs.append((_text(data.get("PatientID")), uid, series))
    return refs


def _text(value: Any) -> str:
    if value is None:
        return ""
    try:
        import pandas as pd

        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value).strip()


def frame_as_batch(frame: pd.DataFrame, kind: str) -> tuple[bytes, str]:
    """``frame`` as the CSV of a batch file of ``kind`` (``"query"`` or ``"transfer"``),
    with the name the parser reports it under.

    Columns a batch file of ``kind`` does not know are left out (a ``Results.df`` carries
    more than a batch needs); a frame without the required ones is refused here.
    """
    frame = _normalised(frame)
    if kind == "transfer":
        known: tuple[str, ...] = BATCH_TRANSFER_COLUMNS
        missing = [c for c in ("PatientID", "StudyInstanceUID") if c not in frame.columns]
        if missing:
            raise InputError(
                f"a DataFrame for a batch transfer needs the column(s) {', '.join(missing)} "
                f"(and usually Pseudonym); {_has(frame)}"
            )
    else:
        known = BATCH_QUERY_COLUMNS
        if "StudyDate" in frame.columns and not {"From", "Until"} & set(frame.columns):
            # A studies frame: query each study's own day.
            frame = frame.assign(From=frame["StudyDate"], Until=frame["StudyDate"])
        if not set(known) & set(frame.columns):
            raise InputError(
                "a DataFrame for a batch query needs at least one of the columns "
                f"{', '.join(known)}; {_has(frame)}"
            )
    columns = [c for c in known if c in frame.columns]
    buffer = io.StringIO()
    frame[columns].to_csv(buffer, index=False, date_format="%Y-%m-%d")
    return buffer.getvalue().encode("utf-8"), "DataFrame.csv"
