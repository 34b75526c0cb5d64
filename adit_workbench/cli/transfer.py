"""``adit-workbench transfer``: copy a study (or some series) from one node to another.

Nodes are resolved through the workbench facade, so the user's source and destination
roles are checked and the transfer is audited like every other entry point. Giving a
pseudonym, a trial ID or name, or ``--pseudonymize`` pseudonymizes with the ADIT
profile under the site's master secret. Prints one line per outcome: what was
delivered, what was skipped or left out, and where it went.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import InputError
from . import app

__all__ = ["transfer_cmd"]


def _progress_printer(enabled: bool) -> Any:
    if not enabled:
        return None

    def show(p: Any) -> None:
        mb = p.bytes_done / 1e6
        click.echo(f"\r{p.instances_done}/{p.instances_total} instances, {mb:.1f} MB",
                   nl=False, err=True)  # fmt: skip

    return show


@app.command("transfer")
@click.option("--from", "source_name", required=True, help="Source node name.")
@click.option("--to", "destination_name", required=True, help="Destination node name.")
@click.option("--study", "study_uid", required=True, help="StudyInstanceUID.")
@click.option("--series", "series_uids", multiple=True, help="SeriesInstanceUID (repeatable).")
@click.option("--pseudonym", help="Write this pseudonym as PatientID and PatientName.")
@click.option("--trial-id", help="ClinicalTrialProtocolID to write.")
@click.option("--trial-name", help="ClinicalTrialProtocolName to write.")
@click.option(
    "--pseudonymize", is_flag=True, help="Pseudonymize with a pseudonym derived from the key."
)
@click.option(
    "--via",
    type=click.Choice(["auto", "cget", "cmove", "wado"], case_sensitive=False),
    default="auto",
    show_default=True,
    help="How to fetch; auto picks WADO-RS, C-GET, C-MOVE by the source's capabilities.",
)
@click.option(
    "--archive-password",
    envvar="ADIT_WB_ARCHIVE_PASSWORD",
    help="Folder destination: write an AES zip with this password (or set the variable "
    "ADIT_WB_ARCHIVE_PASSWORD, which keeps it out of the process list).",
)
@click.option("--nifti", is_flag=True, help="Folder destination: convert to NIfTI (dcm2niix).")
@click.option("--folder-name", help="Job folder inside a folder destination.")
@click.option("--exclude-modality", "exclude", multiple=True, help="Leave out (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def transfer_cmd(
    source_name: str,
    destination_name: str,
    study_uid: str,
    series_uids: tuple[str, ...],
    pseudonym: str | None,
    trial_id: str | None,
    trial_name: str | None,
    pseudonymize: bool,
    via: str,
    archive_password: str | None,
    nifti: bool,
    folder_name: str | None,
    exclude: tuple[str, ...],
    quiet: bool,
) -> int:
    """Transfer a study from --from to --to, pseudonymized if asked; print the outcome."""
    from ..deid import Profile, Pseudonymizer
    from ..transfer import TransferStatus, transfer_study
    from ..workbench import connect_local as connect

    if archive_password is not None and not archive_password:
        raise InputError("--archive-password must not be empty")
    wb = connect()
    source = wb.node(source_name)
    destination = wb.node(destination_name)
    pseudonymizer = None
    if pseudonymize or pseudonym or trial_id or trial_name:
        profile = Profile.adit(
            pseudonym,
            trial_id=trial_id,
            trial_name=trial_name,
            burned_in_policy=wb.settings.burned_in_policy,
            pseudonym_prefix=wb.settings.pseudonym_prefix,
            pseudonym_length=wb.settings.pseudonym_length,
        )
        pseudonymizer = Pseudonymizer(wb.settings.master_secret(), profile)
    show = _progress_printer(not quiet and sys.stderr.isatty())
    try:
        result = transfer_study(
            source,
            destination,
            study_uid,
            list(series_uids) or None,
            via=via,
            pseudonymizer=pseudonymizer,
            exclude_modalities=[m.upper() for m in exclude] if exclude else None,
            folder_name=folder_name,
            archive_password=archive_password,
            nifti=nifti,
            progress=show,
            settings=wb.settings,
        )
    finally:
        if show is not None:
            click.echo("", err=True)
        wb.close()
    size = f"{result.bytes / 1e6:.1f} MB"
    click.echo(
        f"{result.status.value}: {result.delivered} of {result.expected} instances "
        f"delivered to {result.where} (via {result.via}, {size})"
    )
    for count, what in (
        (result.skipped, "already there"),
        (result.excluded, "excluded by modality"),
        (result.refused, "refused (may carry burned-in text)"),
        (result.missing, "missing"),
    ):
        if count:
            click.echo(f"  {count} {what}")
    if result.message:
        click.echo(f"  {result.message}")
    return 0 if result.status is not TransferStatus.FAILURE else 1
