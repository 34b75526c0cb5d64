"""The project's pseudonymizer: the key and profile a transfer job of the project uses."""

from __future__ import annotations

import copy

import pytest

from adit_workbench.config import Settings
from adit_workbench.deid import Option, Profile, project_pseudonymizer
from adit_workbench.errors import InputError
from adit_workbench.jobs.execute import build_pseudonymizer
from adit_workbench.sandbox.synthetic import iter_datasets


def test_same_key_and_profile_as_a_job(settings: Settings) -> None:
    ds = next(iter_datasets(patients=1, series=1, instances=1, rows=8, cols=8))
    job = {"project_name": "LUNG", "deid_options": ["retain-uids"], "trial_protocol_id": "T1"}
    as_job = build_pseudonymizer(settings, job, "SUBJ-1")
    assert as_job is not None
    mine = project_pseudonymizer(settings, project="LUNG", pseudonym="SUBJ-1",
                                 options=["retain-uids"], trial_id="T1")  # fmt: skip
    assert mine.profile == as_job.profile
    assert mine(copy.deepcopy(ds)) == as_job(copy.deepcopy(ds))
    default = project_pseudonymizer(settings)  # a job without a project name: "default"
    assert default.uid("1.2.3") == build_pseudonymizer(settings, {}, None).uid("1.2.3")  # type: ignore[union-attr]
    assert default.uid("1.2.3") != mine.uid("1.2.3")  # two projects cannot be linked


def test_profiles_by_name_or_value(settings: Settings) -> None:
    adit = project_pseudonymizer(settings, profile="ADIT", pseudonym="S")
    assert adit.profile.pseudonym == "S" and Option.CLEAN_DESCRIPTORS in adit.profile.options
    given = Profile(pseudonym="X")
    assert project_pseudonymizer(settings, profile=given).profile is given
    with pytest.raises(InputError, match="unknown profile 'strict'"):
        project_pseudonymizer(settings, profile="strict")
    with pytest.raises(InputError, match="inside the Profile"):
        project_pseudonymizer(settings, profile=given, pseudonym="Y")
    with pytest.raises(InputError, match="unknown de-identification option"):
        project_pseudonymizer(settings, options=["retain-everything"])
    with pytest.raises(InputError, match="project name"):
        project_pseudonymizer(settings, project="  ")
