"""The pseudonymizer of a research project, built the way transfer jobs build theirs.

One project, one key: the key is derived from the site's master secret and the project's
name (:func:`~.keys.project_key`), so that data pseudonymized in a notebook, by a transfer
job or by the CLI under the same project name gives one patient the same pseudonym,
UIDs and date shift, and two projects cannot be linked. Jobs without a project name use
the project ``"default"``; so does everything here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import InputError
from .keys import project_key
from .profile import Option, Profile
from .pseudonymizer import Pseudonymizer

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["DEFAULT_PROJECT", "PROFILES", "project_pseudonymizer"]

#: The project of jobs and calls that name none.
DEFAULT_PROJECT = "default"
#: Named profiles: ``basic`` is what transfer jobs apply, ``adit`` ADIT's preset.
PROFILES = ("basic", "adit")


def project_pseudonymizer(
    settings: Settings,
    *,
    project: str | None = None,
    profile: Profile | str | None = None,
    pseudonym: str | None = None,
    options: Iterable[str | Option] = (),
    trial_id: str | None = None,
    trial_name: str | None = None,
) -> Pseudonymizer:
    """The pseudonymizer a transfer job of ``project`` would use.

    Parameters
    ----------
    settings:
        Supply the master secret and the site's defaults (burned-in policy, pseudonym
        shape, date shift).
    project:
        The project name (a job's ``project_name``); None means ``"default"``.
    profile:
        ``"basic"`` (default: the Basic profile plus ``options``, as jobs do), ``"adit"``
        (ADIT's preset), or a :class:`Profile` used as given.
    pseudonym:
        Written as PatientID and PatientName; None derives one per patient from the key.
    options:
        De-identification options added to the profile (names as in ``deid_options``:
        ``"retain-uids"``, ``"clean-descriptors"`` …).
    trial_id, trial_name:
        Written as ClinicalTrialProtocolID and ClinicalTrialProtocolName.
    """
    added = Option.BASIC
    for name in options:
        added |= Option.parse(name)
    if isinstance(profile, Profile):
        chosen = profile
        if pseudonym is not None or trial_id or trial_name or added != Option.BASIC:
            raise InputError(
                "give pseudonym, options and trial fields inside the Profile, or name a "
                "profile ('basic' or 'adit')"
            )
    else:
        name = (profile or "basic").strip().lower()
        fields = {
            "pseudonym": pseudonym or None,
            "trial_id": trial_id or None,
            "trial_name": trial_name or None,
            "date_shift_days": settings.date_shift_days,
            "pseudonym_prefix": settings.pseudonym_prefix,
            "pseudonym_length": settings.pseudonym_length,
            "burned_in_policy": settings.burned_in_policy,
        }
        if name == "basic":
            chosen = Profile(options=added, **fields)  # type: ignore[arg-type]
        elif name == "adit":
            base = Profile.adit().options
            pseudonym_value = fields.pop("pseudonym")
            chosen = Profile.adit(pseudonym_value, options=base | added, **fields)  # type: ignore[arg-type]
        else:
            raise InputError(
                f"unknown profile {profile!r}: use {' or '.join(PROFILES)}, or a Profile"
            )
    name = project or DEFAULT_PROJECT
    if not name.strip():
        raise InputError("project name must not be empty")
    # The name as given (not stripped): jobs always keyed on it so, and a project's
    # existing pseudonyms must not change.
    return Pseudonymizer(project_key(settings.master_secret(), name), chosen)
