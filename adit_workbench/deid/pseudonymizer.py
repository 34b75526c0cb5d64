"""The pseudonymizer: one walk over a dataset applying the compiled profile.

:class:`Pseudonymizer` is a pure function of (secret, profile, dataset): no database, no
network, no clock. Its only state is a cache of remapped UIDs whose entries are fixed by
the secret, so one instance can be shared by threads, and it pickles to (secret, profile)
for process pools. Pixel data is never decoded: elements the profile keeps are not even
converted from their raw bytes, so compressed pixel data stays byte for byte.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from ..config import BurnedInPolicy
from ..errors import PseudonymizationError
from .keys import check_secret, date_shift, keyed_uid, pseudonym_for
from .profile import Profile
from .rules import Rule, Rules, compile_rules, describe_tag
from .table import Action
from .temporal import DUMMY_DATE, DUMMY_DATETIME, DUMMY_TIME, shift_da, shift_dt

__all__ = [
    "BURNED_IN_MODALITIES",
    "BURNED_IN_WARNING",
    "INSTANCE_KEYWORDS",
    "META_DROPPED",
    "BurnedInRefused",
    "Pseudonymizer",
]

log = logging.getLogger(__name__)

#: Modalities that often carry burned-in text when BurnedInAnnotation is absent.
BURNED_IN_MODALITIES = frozenset({"US", "SC", "OT", "XA", "ES"})

_K, _C, _X, _Z, _D, _U = (
    Action.KEEP,
    Action.CLEAN,
    Action.REMOVE,
    Action.ZERO,
    Action.DUMMY,
    Action.UID,
)
#: Values built here are valid by construction: skip pydicom's per-value validation.
_TRUSTED = config.IGNORE
_TEXT_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
_NUMBER_VRS = frozenset({"IS", "DS"})
_DUMMY_TEXT = {"PN": "ANONYMOUS", "AE": "ANONYMIZED", "AS": "000Y", "UR": ""}
#: Top-level values whose occurrences in kept free text are scrubbed (Clean actions).
_IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientBirthDate",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "StudyID",
    "AdmissionID",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepID",
    "MedicalRecordLocator",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
)
#: Attributes written after the walk: keyword -> (tag, VR).
_WRITTEN = {
    keyword: (int(tag), str(dictionary_VR(tag)))
    for keyword in (
        "PatientID",
        "PatientName",
        "ClinicalTrialProtocolID",
        "ClinicalTrialProtocolName",
        "PatientComments",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "LongitudinalTemporalInformationModified",
    )
    if (tag := tag_for_keyword(keyword)) is not None
}
#: File meta elements a pseudonymized file drops (who sent it, private information).
META_DROPPED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)
#: What pseudonymizing one attribute may depend on besides the attribute itself (the
#: burned-in guard, the date shift, the scrub pattern), and what ``_finish`` reads and
#: writes. :mod:`.encoded` pseudonymizes these together, once per distinct set of values;
#: keep this list in step with ``_begin`` and ``_finish``.
INSTANCE_KEYWORDS = (
    "SpecificCharacterSet",
    "Modality",
    "BurnedInAnnotation",
    "StudyDate",
    "StudyTime",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    *_IDENTITY_KEYWORDS,
    *_WRITTEN,
)
BURNED_IN_WARNING = "pseudonymizing an instance that may carry burned-in text"

#: Callback receiving (path, tag, rule, before, after) for explain().
Tracer = Callable[[str, int, Rule, Any, Any], None]


class BurnedInRefused(PseudonymizationError):
    """The instance may carry burned-in text and the policy is ``refuse``."""


@dataclass(slots=True)
class _Instance:
    """Per-dataset facts fixed before the walk: the shift and what to scrub."""

    shift: int
    scrub: re.Pattern[str] | None


def _vr_of(elem: Any, tag: int) -> str:
    """The element's VR; the dictionary's when the file left it implicit or wrote UN."""
    vr = elem.VR
    if vr and vr != "UN":
        return str(vr)
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    # Ambiguous dictionary VRs ("US or SS", "OB or OW") only matter for dummy values.
    return str(vr).split(" or ")[0]


def _dummy(vr: str) -> Any:
    if vr in _TEXT_VRS:
        return _DUMMY_TEXT.get(vr, "ANONYMIZED")
    if vr == "DA":
        return DUMMY_DATE
    if vr == "TM":
        return DUMMY_TIME
    if vr == "DT":
        return DUMMY_DATETIME
    if vr in _NUMBER_VRS:
        return "0"
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\0\0"
    return 0


class Pseudonymizer:
    """Apply a :class:`Profile` under a secret key.

    ``pseudonymizer(ds)`` changes ``ds`` **in place** and returns it (copy it first with
    ``copy.deepcopy`` to keep the original). Raises :class:`BurnedInRefused` for an
    instance that may carry burned-in text when the profile's policy is ``refuse``.
    """

    def __init__(self, secret: bytes, profile: Profile | None = None) -> None:
        self._secret = check_secret(secret)
        self.profile = profile if profile is not None else Profile()
        self.rules: Rules = compile_rules(self.profile)
        self._uids: dict[str, str] = {}
        self._needs_scrub = any(
            rule.action is _C and rule.reason not in ("modified_dates",)
            for rule in self.rules.by_tag.values()
        )

    # -- pickling: the secret and profile only; the rest is rebuilt ------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"secret": self._secret, "profile": self.profile}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["secret"], state["profile"])  # type: ignore[misc]

    def __repr__(self) -> str:
        names = ", ".join(o.name or "" for o in self.profile.options.members())
        return f"Pseudonymizer(options={names})"

    def explain(self, ds: Dataset) -> Any:
        """What this pseudonymizer would do to each attribute of ``ds`` (see
        :func:`~.explain.explain`); ``ds`` is not changed."""
        from .explain import explain  # explain builds on this module

        return explain(ds, self)

    # -- keyed values ------------------------------------------------------------------
    def uid(self, uid: str) -> str:
        """The replacement of ``uid`` (registered, well-known UIDs are kept)."""
        uid = uid.strip().rstrip("\0")
        if not uid or uid in UID_dictionary:
            return uid
        mapped = self._uids.get(uid)
        if mapped is None:
            if len(self._uids) > 200_000:
                self._uids.clear()  # bounded; entries are recomputable
            mapped = self._uids[uid] = keyed_uid(self._secret, uid)
        return mapped

    def pseudonym(self, patient_id: str) -> str:
        """The profile's pseudonym, or one derived from the secret and ``patient_id``."""
        if self.profile.pseudonym is not None:
            return self.profile.pseudonym
        return pseudonym_for(
            self._secret,
            patient_id,
            self.profile.pseudonym_prefix,
            self.profile.pseudonym_length,
        )

    def date_shift(self, patient_id: str) -> int:
        """Days this patient's dates move under the modified-dates option."""
        return date_shift(self._secret, patient_id, self.profile.date_shift_days)

    @staticmethod
    def burned_in_risk(ds: Dataset) -> bool:
        """True if ``ds`` may carry burned-in text (BurnedInAnnotation YES, or absent on a
        modality that often has it)."""
        flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        if flag:
            return flag != "NO"
        return str(ds.get("Modality", "") or "").strip().upper() in BURNED_IN_MODALITIES

    # -- the walk ------------------------------------------------------------------------
    def __call__(self, ds: Dataset, *, trace: Tracer | None = None) -> Dataset:
        """Pseudonymize ``ds`` in place and return it.

        ``trace`` receives ``(path, tag, rule, before, after)`` for every attribute (what
        :func:`~.explain.explain` uses); it slows the walk down and is meant for one file.
        """
        inst, patient_id = self._begin(ds)
        self._walk(ds, inst, trace, "")
        self._finish(ds, patient_id, trace)
        return ds

    def _begin(self, ds: Dataset) -> tuple[_Instance, str]:
        """The burned-in guard, then the per-instance facts: ``(facts, PatientID)``."""
        if self.burned_in_risk(ds):
            policy = self.profile.burned_in_policy
            if policy is BurnedInPolicy.REFUSE:
                raise BurnedInRefused(
                    "instance may carry burned-in text (BurnedInAnnotation YES or absent "
                    "on a modality that often has it); refused by the burned-in policy"
                )
            if policy is BurnedInPolicy.WARN:
                log.warning(BURNED_IN_WARNING)
        patient_id = str(ds.get("PatientID", "") or "")
        inst = _Instance(
            shift=self.date_shift(patient_id) if self.rules.shift_dates else 0,
            scrub=self._scrub_pattern(ds) if self._needs_scrub else None,
        )
        return inst, patient_id

    def _scrub_pattern(self, ds: Dataset) -> re.Pattern[str] | None:
        tokens: set[str] = set()
        for keyword in _IDENTITY_KEYWORDS:
            value = ds.get(keyword)
            if not value:
                continue
            for item in value if isinstance(value, MultiValue | list) else [value]:
                text = str(item).strip()
                if len(text) >= 2:
                    tokens.add(text)
                tokens.update(p for p in re.split(r"[\^=\s,]+", text) if len(p) >= 3)
        if not tokens:
            return None
        ordered = sorted(tokens, key=len, reverse=True)
        return re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE)

    def _walk(self, ds: Dataset, inst: _Instance, trace: Tracer | None, path: str) -> None:
        private_tags: list[int] = []
        for tag in list(ds.keys()):
            if (tag >> 16) & 1:
                private_tags.append(tag)
            else:
                self._element(ds, tag, inst, trace, path)
        if private_tags:
            self._privates(ds, private_tags, trace, path)

    def rule(self, tag: int) -> Rule:
        """The rule for a standard (even-group) attribute, curves and overlays included."""
        group = tag >> 16
        if 0x5000 <= group <= 0x501E:
            return self.rules.curve
        if 0x6000 <= group <= 0x601E:
            return self.rules.overlay  # a partial overlay module is invalid: one rule for all
        return self.rules.rule_for(tag)

    def _element(
        self, ds: Dataset, tag: int, inst: _Instance, trace: Tracer | None, path: str
    ) -> None:
        """Apply the rule to one standard attribute of ``ds``; on its own, it depends on
        nothing but the attribute and ``inst`` (what lets :mod:`.encoded` memoize it)."""
        if tag >> 16 == 0 or tag & 0xFFFF == 0:
            del ds[tag]  # command and group-length elements are recomputed or obsolete
            return
        rule = self.rule(tag)
        action = rule.action
        vr = _vr_of(ds.get_item(tag), tag)
        if action is _K and vr != "SQ" and trace is None:
            return
        before = ds[tag].value if trace is not None else None
        self._apply(ds, tag, vr, action, inst, trace, path)
        if trace is not None:
            after = ds[tag].value if tag in ds else None
            trace(path, tag, rule, before, after)

    def _apply(
        self,
        ds: Dataset,
        tag: int,
        vr: str,
        action: Action,
        inst: _Instance,
        trace: Tracer | None,
        path: str,
    ) -> None:
        if action is _X:
            del ds[tag]
            return
        if vr == "SQ":
            if action is _Z:
                ds[tag] = DataElement(tag, "SQ", Sequence())
                return
            elem = ds[tag]
            name = f"{path}{describe_tag(tag)}"
            for index, item in enumerate(elem.value or ()):
                self._walk(item, inst, trace, f"{name}[{index}].")
            return
        if action is _Z:
            empty = "" if vr in _TEXT_VRS or vr in ("DA", "DT", "TM", "UI") else None
            ds[tag] = DataElement(tag, vr, empty, validation_mode=_TRUSTED)
        elif action is _D:
            value = self.uid(str(ds[tag].value)) if vr == "UI" else _dummy(vr)
            ds[tag] = DataElement(tag, vr, value, validation_mode=_TRUSTED)
        elif action is _U:
            elem = ds[tag]
            value = elem.value
            if isinstance(value, MultiValue | list):
                elem.value = [self.uid(str(v)) for v in value]
            elif value:
                elem.value = self.uid(str(value))
        elif action is _C:
            self._clean(ds, tag, vr, inst)

    def _clean(self, ds: Dataset, tag: int, vr: str, inst: _Instance) -> None:
        elem = ds[tag]
        value = elem.value
        if vr in ("DA", "DT"):
            if not self.rules.shift_dates:
                elem.value = _dummy(vr) if value else value
                return
            shift = shift_da if vr == "DA" else shift_dt
            if isinstance(value, MultiValue | list):
                elem.value = [shift(str(v), inst.shift) for v in value]
            elif value:
                elem.value = shift(str(value), inst.shift)
        elif vr in _TEXT_VRS and value and inst.scrub is not None:
            if isinstance(value, MultiValue | list):
                elem.value = [inst.scrub.sub("*", str(v)) for v in value]
            else:
                elem.value = inst.scrub.sub("*", str(value))
        # TM under whole-day shifts, numbers and binary values: kept as they are.

    def _privates(self, ds: Dataset, tags: list[int], trace: Tracer | None, path: str) -> None:
        safe = self.rules.safe_private
        rule = self.rules.private
        creators: dict[tuple[int, int], str] = {}
        if safe:
            for tag in tags:
                if 0x10 <= tag & 0xFFFF <= 0xFF:
                    creators[(tag >> 16, tag & 0xFF)] = str(ds[tag].value).strip()
        kept_blocks: set[tuple[int, int]] = set()
        for tag in tags:
            group, elem_no = tag >> 16, tag & 0xFFFF
            if 0x10 <= elem_no <= 0xFF:
                continue  # creators are decided once their blocks are known
            block = (group, elem_no >> 8)
            creator = creators.get(block)
            if creator is not None and (creator, group, elem_no & 0xFF) in safe:
                kept_blocks.add(block)
                if trace is not None:
                    value = ds[tag].value
                    trace(path, tag, Rule(_K, "safe_private"), value, value)
                continue
            if trace is not None:
                trace(path, tag, rule, ds[tag].value, None)
            del ds[tag]
        for tag in tags:
            if 0x10 <= tag & 0xFFFF <= 0xFF and (tag >> 16, tag & 0xFF) not in kept_blocks:
                if trace is not None:
                    trace(path, tag, rule, ds[tag].value, None)
                del ds[tag]

    def _finish(self, ds: Dataset, patient_id: str, trace: Tracer | None) -> None:
        """Write the pseudonym, trial and recording attributes, and fix the file meta."""
        profile = self.profile
        pseudonym = self.pseudonym(patient_id)
        written: dict[str, Any] = {}
        if "PatientID" not in profile.keep:
            written["PatientID"] = pseudonym
        if "PatientName" not in profile.keep:
            written["PatientName"] = pseudonym
        if profile.trial_id is not None:
            written["ClinicalTrialProtocolID"] = profile.trial_id
        if profile.trial_name is not None:
            written["ClinicalTrialProtocolName"] = profile.trial_name
        if profile.trial_id is not None and profile.pseudonym is not None:
            session = f"{ds.get('StudyDate', '')}-{ds.get('StudyTime', '')}"
            written["PatientComments"] = (
                f"Project:{profile.trial_id} Subject:{pseudonym} Session:{pseudonym}_{session}"
            )
        written["PatientIdentityRemoved"] = "YES"
        methods = [str(m) for m in _as_list(ds.get("DeidentificationMethod"))]
        written["DeidentificationMethod"] = [*methods, profile.method_description()]
        written["LongitudinalTemporalInformationModified"] = profile.temporal_information
        for keyword, value in written.items():
            tag, vr = _WRITTEN[keyword]
            before = ds[tag].value if trace is not None and tag in ds else None
            ds[tag] = DataElement(tag, vr, value, validation_mode=_TRUSTED)
            if trace is not None:
                trace("", tag, Rule(Action.DUMMY, "written"), before, value)
        ds.DeidentificationMethodCodeSequence = _method_codes(ds, profile)
        if trace is not None:
            trace("", 0x00120064, Rule(Action.DUMMY, "written"), None, "one item per option")
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if "SOPInstanceUID" in ds:
                meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            elif (
                "MediaStorageSOPInstanceUID" in meta
                and self.rules.rule_for(0x00080018).action is _U
            ):
                meta.MediaStorageSOPInstanceUID = self.uid(meta.MediaStorageSOPInstanceUID)
            for tag in META_DROPPED:
                if tag in meta:
                    del meta[tag]
        # The preamble is free for applications (TIFF headers …) and may hold anything.
        ds.preamble = b"\0" * 128


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list):
        return list(value)
    return [value]


def _method_codes(ds: Dataset, profile: Profile) -> Sequence:
    items = [item for item in ds.get("DeidentificationMethodCodeSequence", [])]
    have = {(str(i.get("CodeValue", "")), str(i.get("CodingSchemeDesignator", ""))) for i in items}
    for option in profile.options.members():
        if (option.code, "DCM") in have:
            continue
        item = Dataset()
        item[0x00080100] = DataElement(0x00080100, "SH", option.code, validation_mode=_TRUSTED)
        item[0x00080102] = DataElement(0x00080102, "SH", "DCM", validation_mode=_TRUSTED)
        item[0x00080104] = DataElement(0x00080104, "LO", option.meaning, validation_mode=_TRUSTED)
        items.append(item)
    return Sequence(items)
