"""``adit-workbench upload``: a local folder, pseudonymized, to a PACS or folder node.

The same operation as ``wb.upload`` and the service's ``POST /api/uploads``
(:func:`~adit_workbench.jobs.upload.upload_files`): the ``upload`` permission and the
destination role are checked, the call is audited, and the files are pseudonymized with
the project's key and a transfer job's profile. Prints the counts on stdout and each
refused file with its reason; exits 1 when a file was refused.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import app
from ._common import clean, open_workbench

__all__ = ["upload_cmd"]


@app.command("upload")
@click.argument(
    "folder", type=click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)
)
@click.option("--to", "destination", required=True, help="Destination node name.")
@click.option("--pseudonym", help="Write this pseudonym as PatientID and PatientName.")
@click.option("--trial-id", default="", help="ClinicalTrialProtocolID to write.")
@click.option("--trial-name", default="", help="ClinicalTrialProtocolName to write.")
@click.option("--project", "project_name", default="", help="Project (its pseudonymization key).")
@click.option(
    "--deid-option", "deid_options", multiple=True, help="Pseudonymization option (repeatable)."
)
@click.option(
    "--via",
    type=click.Choice(["dimse", "dicomweb"], case_sensitive=False),
    help="A server destination: C-STORE or STOW-RS (default: by its capabilities).",
)
def upload_cmd(
    folder: Path,
    destination: str,
    pseudonym: str | None,
    trial_id: str,
    trial_name: str,
    project_name: str,
    deid_options: tuple[str, ...],
    via: str | None,
) -> int:
    """Pseudonymize every DICOM file below FOLDER and store it to --to."""
    wb = open_workbench()
    result = wb.upload(
        folder,
        destination=destination,
        pseudonym=pseudonym,
        trial_protocol_id=trial_id,
        trial_protocol_name=trial_name,
        project_name=project_name,
        deid_options=list(deid_options),
        via=via.lower() if via else None,
    )
    click.echo(f"{destination}: {result.summary()}")
    for name, why in result.refused:
        click.echo(f"refused {clean(name)}: {clean(why)}", err=True)
    return 0 if result.ok else 1
