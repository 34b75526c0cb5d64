"""adit-workbench deid commands: ``pseudonymize`` and ``leak-scan``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import InputError, PseudonymizationError
from . import app
from ._common import LazyChoice, ServiceHostOnly, clean, is_service_client

#: The PS3.15 options by name, for the help text (a test keeps it in step with
#: :class:`~adit_workbench.deid.Option`; importing that here would cost pydicom).
_OPTION_NAMES = (
    "clean-structured-content", "clean-descriptors", "retain-long-full-dates",
    "retain-long-modified-dates", "retain-patient-characteristics", "retain-device-identity",
    "retain-uids", "retain-safe-private", "retain-institution-identity",
)  # fmt: skip


def _kinds() -> tuple[str, ...]:
    from ..deid import KINDS

    return KINDS


def _policies() -> list[str]:
    from ..config import BurnedInPolicy

    return [p.value for p in BurnedInPolicy]


def _read_secret(path: Path | None, project: str | None) -> bytes:
    """The secret: hex text or raw bytes from ``path``, else the workbench master secret."""
    from ..config import get_settings
    from ..deid.keys import MIN_SECRET_BYTES, project_key

    if path is None:
        if is_service_client():
            # master_secret() would create a new, private secret here: files pseudonymized
            # under it would never match the site's pseudonyms.
            raise ServiceHostOnly(
                "the site's pseudonymization secret is held by the workbench service: give "
                "--secret-file, or pseudonymize through the service (adit-workbench upload "
                "or a transfer job)"
            )
        secret = get_settings().master_secret()
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read secret file {path}: {exc.strerror}") from None
        text = data.strip()
        try:
            secret = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            secret = text
        if len(secret) < MIN_SECRET_BYTES:
            raise InputError(f"secret file {path} holds fewer than {MIN_SECRET_BYTES} bytes")
    return project_key(secret, project) if project else secret


@app.command("pseudonymize")
@click.argument("in_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--pseudonym", help="PatientID/PatientName for all input (default: derived).")
@click.option(
    "--secret-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Key file (hex or raw bytes). Default: the workbench master secret.",
)
@click.option("--project", help="Derive the key for this research project from the secret.")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="NAME",
    help=f"PS3.15 option by name or CID 7050 code (repeatable): {', '.join(_OPTION_NAMES)}.",
)
@click.option(
    "--preset",
    type=click.Choice(["basic", "adit"]),
    default="basic",
    show_default=True,
    help="adit: pseudonym as PatientID and name; study, series, acquisition and content "
    "dates kept; patient characteristics and cleaned descriptions kept.",
)
@click.option("--trial-id", help="ClinicalTrialProtocolID to write.")
@click.option("--trial-name", help="ClinicalTrialProtocolName to write.")
@click.option(
    "--burned-in",
    type=LazyChoice(_policies),
    help="Instances that may carry burned-in text (default: the setting).",
)
@click.option("--workers", type=click.IntRange(1, 256), help="Processes (default: all cores).")
@click.option("--what-if", is_flag=True, help="Print what would happen per file; write nothing.")
def pseudonymize(
    in_dir: Path,
    out_dir: Path,
    pseudonym: str | None,
    secret_file: Path | None,
    project: str | None,
    options: tuple[str, ...],
    preset: str,
    trial_id: str | None,
    trial_name: str | None,
    burned_in: str | None,
    workers: int | None,
    what_if: bool,
) -> None:
    """Pseudonymize the DICOM files under IN_DIR into OUT_DIR (same folder structure)."""
    from ..config import get_settings
    from ..deid import (
        Option,
        Profile,
        Pseudonymizer,
        explain,
        iter_files,
        pseudonymize_folder,
        read_dicom,
    )

    if not in_dir.is_dir():
        raise InputError(f"input folder {in_dir} does not exist")
    settings = get_settings()
    flags = Option.BASIC
    for name in options:
        flags |= Option.parse(name)
    fields: dict[str, Any] = {
        "pseudonym": pseudonym,
        "trial_id": trial_id,
        "trial_name": trial_name,
        "burned_in_policy": burned_in or settings.burned_in_policy,
        "pseudonym_prefix": settings.pseudonym_prefix,
        "pseudonym_length": settings.pseudonym_length,
        "date_shift_days": settings.date_shift_days,
    }
    if preset == "adit":
        profile = Profile.adit(options=flags | Profile.adit().options, **fields)
    else:
        profile = Profile(options=flags, **fields)
    pseudonymizer = Pseudonymizer(_read_secret(secret_file, project), profile)
    if what_if:
        for path in iter_files(in_dir):
            rel = path.relative_to(in_dir)
            try:
                ds = read_dicom(path)
            except Exception as exc:
                why = str(exc) if type(exc).__name__ == "Malformed" else "not DICOM"
                click.echo(clean(f"== {rel}: {why}, would be skipped"))
                continue
            try:
                click.echo(clean(f"== {rel}\n{explain(ds, pseudonymizer)}", keep_lines=True))
            except PseudonymizationError as exc:
                click.echo(clean(f"== {rel}: would be refused: {exc}"))
        return
    report = pseudonymize_folder(in_dir, out_dir, pseudonymizer, workers=workers)
    click.echo(clean(report, keep_lines=True))
    if not report.ok:
        raise PseudonymizationError(
            f"{len(report.refused)} refused and {len(report.failed)} failed of "
            f"{len(report.written) + len(report.refused) + len(report.failed)} instances"
        )


@app.command("leak-scan")
@click.argument("originals", type=click.Path(path_type=Path, exists=True))
@click.argument("outputs", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--ignore",
    multiple=True,
    type=LazyChoice(_kinds),
    help="Kinds of value kept on purpose (repeatable), e.g. date with full dates.",
)
def leak_scan(originals: Path, outputs: Path, ignore: tuple[str, ...]) -> None:
    """Search OUTPUTS for any identifying value of ORIGINALS (exit 1 if one is found)."""
    from ..deid import iter_files, scan_leaks

    def files(path: Path) -> list[Path]:
        return list(iter_files(path)) if path.is_dir() else [path]

    root = outputs if outputs.is_dir() else None
    report = scan_leaks(files(originals), files(outputs), ignore=ignore, output_root=root)
    click.echo(clean(report, keep_lines=True))
    if report:
        raise PseudonymizationError(f"{len(report.leaks)} identifying value(s) found in output")
