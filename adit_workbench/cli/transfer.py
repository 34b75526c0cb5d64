"""``adit-workbench transfer``: copy a study (or some series) from one node to another.

One operation, one code path: the command creates a *selective-transfer job* through
the workbench facade (:meth:`~adit_workbench.workbench.Workbench.transfer`), exactly as
a notebook's ``wb.transfer(...)`` or a dashboard does. So the transfer permission, the
source and destination roles and the unpseudonymized-transfer permission are checked,
the job and its task are stored and audited, and the study is pseudonymized with the
project's key (``project_key(master, project)``) and the job profile: the same study
with the same pseudonym gives the same files here and in a batch-transfer job.

By default the command waits and shows progress (on the embedded defaults the task runs
in this process); ``--no-wait`` only queues it for ``adit-workbench worker``. Prints the
job id on stdout, then the job's and the task's outcome.

With ``ADIT_WB_SERVICE_URL`` (a hub terminal, a script with a token) the job is created by
the workbench service, which checks the caller's permissions and runs it in its workers;
``--via``, ``--exclude-modality`` and ``--folder-name`` are then refused, as the service's
transfer request has no field for them.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import InputError
from . import app
from ._common import is_remote, open_workbench

__all__ = ["transfer_cmd"]


@app.command("transfer")
@click.option("--from", "source_name", required=True, help="Source node name.")
@click.option("--to", "destination_name", required=True, help="Destination node name.")
@click.option("--study", "study_uid", required=True, help="StudyInstanceUID.")
@click.option("--series", "series_uids", multiple=True, help="SeriesInstanceUID (repeatable).")
@click.option("--patient-id", default="", help="PatientID of the study (recorded on the task).")
@click.option("--pseudonym", help="Write this pseudonym as PatientID and PatientName.")
@click.option("--trial-id", default="", help="ClinicalTrialProtocolID to write.")
@click.option("--trial-name", default="", help="ClinicalTrialProtocolName to write.")
@click.option("--project", "project_name", default="", help="Project (its pseudonymization key).")
@click.option(
    "--pseudonymize/--no-pseudonymize",
    default=True,
    show_default=True,
    help="Pseudonymize (the default, as for every job); --no-pseudonymize needs the "
    "transfer_unpseudonymized permission.",
)
@click.option(
    "--deid-option", "deid_options", multiple=True, help="Pseudonymization option (repeatable)."
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
@click.option("--folder-name", help="Job folder inside a folder destination (default: ADIT's).")
@click.option("--exclude-modality", "exclude", multiple=True, help="Leave out (repeatable).")
@click.option("--urgent", is_flag=True, help="Urgent priority (needs the permission).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait, show progress.")
def transfer_cmd(
    source_name: str,
    destination_name: str,
    study_uid: str,
    series_uids: tuple[str, ...],
    patient_id: str,
    pseudonym: str | None,
    trial_id: str,
    trial_name: str,
    project_name: str,
    pseudonymize: bool,
    deid_options: tuple[str, ...],
    via: str,
    archive_password: str | None,
    nifti: bool,
    folder_name: str | None,
    exclude: tuple[str, ...],
    urgent: bool,
    wait: bool,
) -> int:
    """Transfer a study from --from to --to as a selective-transfer job; print the outcome."""
    if archive_password is not None and not archive_password:
        raise InputError("--archive-password must not be empty")
    if pseudonym and not pseudonymize:
        raise InputError("--pseudonym needs pseudonymization (drop --no-pseudonymize)")
    studies: list[Any] = (
        [(patient_id, study_uid, uid) for uid in series_uids]
        if series_uids
        else [(patient_id, study_uid)]
    )
    # Transfer-layer choices travel in the job's params, so a worker applies them too.
    params: dict[str, Any] = {"via": via.lower()}
    if exclude:
        params["exclude_modalities"] = sorted({m.upper() for m in exclude})
    if folder_name:
        params["folder_name"] = folder_name
    options: dict[str, Any] = {"params": params}
    wb = open_workbench()
    if is_remote(wb):
        asked = {"--via": via.lower() != "auto", "--exclude-modality": bool(exclude),
                 "--folder-name": bool(folder_name)}  # fmt: skip
        given = [name for name, value in asked.items() if value]
        if given:
            raise InputError(
                f"{', '.join(given)}: not offered by the workbench service's transfer; "
                "leave it out (the service picks the route by the source's capabilities)"
            )
        options = {}  # the service's request has no params (the default route is "auto")
    job = wb.transfer(
        studies,
        source=source_name,
        to=destination_name,
        pseudonym=pseudonym,
        pseudonymize=pseudonymize,
        trial_protocol_id=trial_id,
        trial_protocol_name=trial_name,
        project_name=project_name,
        deid_options=list(deid_options),
        archive_password=archive_password,
        convert_to_nifti=nifti,
        urgent=urgent,
        **options,
    )
    click.echo(str(job.id))
    if not wait:
        click.echo(f"job {job.id}: queued (adit-workbench jobs show {job.id})", err=True)
        return 0
    # A short poll: a small study is done within a second, and a script calling this
    # in a loop waits for the outcome, not for the next half-second tick (a cheap read).
    job.wait(poll=0.1, progress=True, raise_on_failure=False)
    click.echo(f"job {job.id}: {job.status}: {job.message}", err=True)
    tasks = job.tasks
    for message in tasks["message"] if not tasks.empty else ():
        if message:
            click.echo(f"  {message}")
    return 1 if job.status in ("FAILURE", "CANCELED") else 0
