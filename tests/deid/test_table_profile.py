"""Table E.1-1 as data, the options and the profile, the keyed derivations."""

from __future__ import annotations

import json

import pytest
from pydicom.datadict import tag_for_keyword

from adit_workbench.config import BurnedInPolicy, Settings
from adit_workbench.deid import (
    ADIT_KEPT_DATES,
    Action,
    Option,
    Profile,
    compile_rules,
    date_shift,
    keyed_uid,
    load_safe_private,
    load_table,
    project_key,
    pseudonym_for,
)
from adit_workbench.deid.table import COLUMNS, _row
from adit_workbench.errors import ConfigurationError, InputError

from .conftest import OTHER_SECRET, SECRET


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    return tag


def test_table_is_thorough_and_valid() -> None:
    rows = load_table()
    assert len(rows) >= 400
    by_keyword = {r.keyword: r for r in rows if r.keyword}
    assert by_keyword["PatientName"].basic is Action.ZERO
    assert by_keyword["SOPInstanceUID"].basic is Action.UID
    assert by_keyword["InstitutionName"].basic is Action.REMOVE_OR_ZERO_OR_DUMMY
    assert by_keyword["ReferencedImageSequence"].basic is Action.REMOVE_OR_ZERO_OR_UID
    assert by_keyword["StudyDate"].options == {"full_dates": "K", "modified_dates": "C"}
    patterns = {r.tag: r for r in rows if r.is_pattern}
    assert set(patterns) == {"50xxxxxx", "60xx3000", "60xx4000", "ggggeeee"}
    used = {col for r in rows for col in r.options}
    assert used == set(COLUMNS)
    sequences = [r for r in rows if r.vr == "SQ"]
    assert len(sequences) >= 50


def test_compound_actions_resolve_to_a_single_one() -> None:
    assert Action.REMOVE_OR_ZERO.resolved is Action.ZERO
    assert Action.REMOVE_OR_ZERO_OR_DUMMY.resolved is Action.DUMMY
    assert Action.REMOVE_OR_ZERO_OR_UID.resolved is Action.UID
    assert Action.KEEP.resolved is Action.KEEP


@pytest.mark.parametrize(
    "raw",
    [
        {"tag": "0010001", "keyword": "X", "name": "n", "basic": "X"},
        {"tag": "00100010", "keyword": "PatientName", "name": "n", "basic": "Q"},
        {
            "tag": "00100010",
            "keyword": "PatientName",
            "name": "n",
            "basic": "Z",
            "options": {"nope": "K"},
        },
        {"tag": "00100010", "keyword": None, "name": "n", "basic": "Z"},
    ],
)
def test_bad_table_rows_are_rejected(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        _row(raw)


def test_safe_private_list_loads() -> None:
    safe = load_safe_private()
    assert safe and all(s.group & 1 for s in safe)


def test_options_carry_cid_7050_codes() -> None:
    codes = {o.code for o in Option}
    assert codes == {"113100", *(f"1131{n:02d}" for n in range(4, 13))}
    assert Option.parse("retain-uids") is Option.RETAIN_UIDS
    assert Option.parse("113107") is Option.RETAIN_LONG_MODIFIED_DATES
    assert Option.parse("RETAIN_DEVICE_IDENTITY") is Option.RETAIN_DEVICE_IDENTITY
    with pytest.raises(InputError):
        Option.parse("clean-pixels")


def test_profile_validates_in_its_constructor() -> None:
    assert Option.BASIC in Profile(Option.RETAIN_UIDS).options
    with pytest.raises(InputError):
        Profile(Option.RETAIN_LONG_FULL_DATES | Option.RETAIN_LONG_MODIFIED_DATES)
    with pytest.raises(InputError):
        Profile(pseudonym="x" * 65)
    with pytest.raises(InputError):
        Profile(trial_id="a\\b")
    with pytest.raises(InputError):
        Profile(date_shift_days=0)
    with pytest.raises(InputError):
        Profile(keep=frozenset({"NotAKeyword"}))
    with pytest.raises(ValueError):
        Profile(burned_in_policy="sometimes")  # type: ignore[arg-type]


def test_profile_records_and_derived_facts() -> None:
    assert Profile().temporal_information == "REMOVED"
    assert Profile(Option.RETAIN_LONG_FULL_DATES).temporal_information == "UNMODIFIED"
    assert Profile(Option.RETAIN_LONG_MODIFIED_DATES).temporal_information == "MODIFIED"
    record = Profile(Option.RETAIN_UIDS, pseudonym="P1").to_dict()
    assert json.loads(json.dumps(record))["codes"] == ["113100", "113110"]
    assert len(Profile(Option.RETAIN_UIDS | Option.CLEAN_DESCRIPTORS).method_description()) <= 64


def test_adit_preset() -> None:
    profile = Profile.adit("SUBJ01", trial_id="T1", trial_name="Trial")
    assert profile.keep >= ADIT_KEPT_DATES
    assert profile.pseudonym == "SUBJ01"
    assert profile.temporal_information == "UNMODIFIED"
    rules = compile_rules(profile)
    assert rules.by_tag[_tag("StudyDate")].action is Action.KEEP
    assert rules.by_tag[_tag("PatientBirthDate")].action is Action.ZERO


def test_profile_from_settings(settings: Settings) -> None:
    profile = Profile.from_settings(settings, pseudonym_prefix="XY")
    assert profile.burned_in_policy is settings.burned_in_policy
    assert profile.pseudonym_prefix == "XY"
    assert Profile.with_options(["retain-uids"]).options == Option.BASIC | Option.RETAIN_UIDS
    assert Profile().replace(burned_in_policy="warn").burned_in_policy is BurnedInPolicy.WARN


@pytest.mark.parametrize(
    ("option", "keyword", "action"),
    [
        (Option.BASIC, "DeviceSerialNumber", Action.DUMMY),
        (Option.RETAIN_DEVICE_IDENTITY, "DeviceSerialNumber", Action.KEEP),
        (Option.RETAIN_UIDS, "SOPInstanceUID", Action.KEEP),
        (Option.RETAIN_INSTITUTION_IDENTITY, "InstitutionName", Action.KEEP),
        (Option.RETAIN_PATIENT_CHARACTERISTICS, "PatientWeight", Action.KEEP),
        (Option.RETAIN_LONG_FULL_DATES, "AcquisitionDate", Action.KEEP),
        (Option.RETAIN_LONG_MODIFIED_DATES, "AcquisitionDate", Action.CLEAN),
        (Option.CLEAN_DESCRIPTORS, "StudyDescription", Action.CLEAN),
        (Option.CLEAN_STRUCTURED_CONTENT, "ContentSequence", Action.CLEAN),
        (Option.BASIC, "StudyDescription", Action.REMOVE),
    ],
)
def test_options_change_compiled_actions(option: Option, keyword: str, action: Action) -> None:
    assert compile_rules(Profile(option)).by_tag[_tag(keyword)].action is action


def test_modified_dates_win_over_patient_characteristics() -> None:
    profile = Profile(Option.RETAIN_LONG_MODIFIED_DATES | Option.RETAIN_PATIENT_CHARACTERISTICS)
    assert compile_rules(profile).by_tag[_tag("LastMenstrualDate")].action is Action.CLEAN


def test_keyed_uid() -> None:
    uid = keyed_uid(SECRET, "1.2.3.4")
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert int(uid[5:]) < 2**128
    assert uid == keyed_uid(SECRET, "1.2.3.4")
    assert uid != keyed_uid(OTHER_SECRET, "1.2.3.4")
    assert uid != keyed_uid(SECRET, "1.2.3.5")


def test_pseudonyms_and_date_shifts_are_keyed() -> None:
    p = pseudonym_for(SECRET, "PAT1", "WB", 10)
    assert p.startswith("WB") and len(p) == 12 and p.isalnum()
    assert p == pseudonym_for(SECRET, "PAT1", "WB", 10)
    assert p != pseudonym_for(OTHER_SECRET, "PAT1", "WB", 10)
    shifts = {date_shift(SECRET, f"PAT{i}", 30) for i in range(50)}
    assert 0 not in shifts and all(-30 <= s <= 30 for s in shifts) and len(shifts) > 10
    assert project_key(SECRET, "a") != project_key(SECRET, "b")
    with pytest.raises(InputError):
        project_key(b"short", "a")
