"""``adit-workbench query``: find patients, studies, series or instances on a node.

Prints a table (default), CSV or JSON on stdout; the one-line summary (count, route, and
a truncation note when the limit cut the answer short) goes to stderr so that CSV and
JSON stay clean for pipes. Dates are ``YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD`` with either
end optional.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from ..errors import InputError
from . import app
from ._common import clean, clean_frame, open_workbench

if TYPE_CHECKING:
    from ..dicom.query import FindNode

__all__ = ["query_cmd"]

_DATE_ARG = re.compile(r"^(\d{8})?(-(\d{8})?)?$")
_FIND = {"patient": "find_patients", "study": "find_studies", "series": "find_series",
         "instance": "find_instances"}  # fmt: skip


def _resolve_node(name: str) -> FindNode:
    """The node registered as ``name``, through the workbench of this run: a guarded live
    node, or the service's node when the CLI is its client."""
    node: FindNode = open_workbench().node(name)
    return node


def _is_remote_node(node: object) -> bool:
    return type(node).__module__ == "adit_workbench.remote.node"


def _date_arg(option: str, value: str | None, *, allow_range: bool = True) -> str | None:
    if not value:
        return None
    text = value.strip()
    m = _DATE_ARG.match(text)
    if not m or text == "-" or (not allow_range and m[2]):
        form = "YYYYMMDD or YYYYMMDD-YYYYMMDD (either end may be empty)"
        raise InputError(f"{option}: expected {form if allow_range else 'YYYYMMDD'}")
    return text


@app.command("query")
@click.argument("node")
@click.option(
    "--level",
    type=click.Choice(["patient", "study", "series", "instance"], case_sensitive=False),
    default="study",
    show_default=True,
    help="Level of the results.",
)
@click.option("--patient-id", help="PatientID (wildcards * and ? allowed).")
@click.option("--patient-name", help='PatientName; "Last, First" is accepted.')
@click.option("--birth-date", help="PatientBirthDate as YYYYMMDD.")
@click.option("--accession", help="AccessionNumber.")
@click.option("--study-date", help="StudyDate: YYYYMMDD or FROM-UNTIL, either end empty.")
@click.option("--modality", help="One modality or several, comma-separated (CT,MR).")
@click.option("--study-description", help="StudyDescription (wildcards allowed).")
@click.option("--series-description", help="SeriesDescription (series/instance level).")
@click.option("--series-number", help="SeriesNumber, or several comma-separated.")
@click.option("--study-uid", help="StudyInstanceUID.")
@click.option("--series-uid", help="SeriesInstanceUID (series/instance level).")
@click.option(
    "--via",
    type=click.Choice(["auto", "dimse", "dicomweb"], case_sensitive=False),
    default="auto",
    show_default=True,
    help="C-FIND, QIDO-RS, or whatever the node was probed to support.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many results.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"], case_sensitive=False),
    default="table",
    show_default=True,
)
def query_cmd(
    node: str,
    level: str,
    patient_id: str | None,
    patient_name: str | None,
    birth_date: str | None,
    accession: str | None,
    study_date: str | None,
    modality: str | None,
    study_description: str | None,
    series_description: str | None,
    series_number: str | None,
    study_uid: str | None,
    series_uid: str | None,
    via: str,
    limit: int | None,
    fmt: str,
) -> None:
    """Find patients, studies, series or instances on NODE."""
    filters: dict[str, Any] = {
        "patient_id": patient_id,
        "patient_name": patient_name,
        "patient_birth_date": _date_arg("--birth-date", birth_date, allow_range=False),
        "accession_number": accession,
        "study_date": _date_arg("--study-date", study_date),
        "modality": modality,
        "study_description": study_description,
        "series_description": series_description,
        "series_number": series_number,
        "study_uid": study_uid,
        "series_uid": series_uid,
    }
    filters = {k: v for k, v in filters.items() if v not in (None, "")}
    target = _resolve_node(node)
    try:
        if _is_remote_node(target):
            # The service's query route: its checks, audit and limits, the same results.
            find_level = getattr(target, _FIND[level.lower()])
            results = find_level(limit=limit, via=via.lower(), **filters)
        else:
            from ..dicom.query import find

            results = find(target, level, limit=limit, via=via.lower(), **filters)
    finally:
        close = getattr(target, "close", None)
        if close is not None:
            close()
    frame = results.df
    fmt = fmt.lower()
    if fmt == "csv":  # JSON escapes control characters itself; CSV and tables must not carry them
        click.echo(clean_frame(frame).to_csv(index=False, date_format="%Y%m%d"), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=1))
    elif len(frame):
        for column in ("PatientBirthDate", "StudyDate"):
            if column in frame:
                frame[column] = frame[column].dt.strftime("%Y-%m-%d").fillna("")
        click.echo(clean_frame(frame).to_string(index=False, na_rep=""))
    click.echo(clean(results.summary()), err=True)
