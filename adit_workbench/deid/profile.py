"""De-identification profile: the PS3.15 options claimed, plus what a project adds.

A :class:`Profile` is an immutable value validated in its constructor. It says which
options of the Basic Application Level Confidentiality Profile are claimed (as
:class:`Option` flags carrying their CID 7050 codes), the pseudonym and trial attributes to
write, how derived pseudonyms and date shifts look, and what to do with instances that may
carry burned-in text. :meth:`Profile.to_dict` is what a job records about how its data
was de-identified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Flag, auto
from typing import Any

from ..config import BurnedInPolicy, Settings
from ..errors import InputError
from .table import SafePrivate, load_safe_private

__all__ = ["ADIT_KEPT_DATES", "Option", "Profile"]


class Option(Flag):
    """Options of PS3.15 Annex E that the workbench implements (CID 7050 codes)."""

    BASIC = auto()
    CLEAN_STRUCTURED_CONTENT = auto()
    CLEAN_DESCRIPTORS = auto()
    RETAIN_LONG_FULL_DATES = auto()
    RETAIN_LONG_MODIFIED_DATES = auto()
    RETAIN_PATIENT_CHARACTERISTICS = auto()
    RETAIN_DEVICE_IDENTITY = auto()
    RETAIN_UIDS = auto()
    RETAIN_SAFE_PRIVATE = auto()
    RETAIN_INSTITUTION_IDENTITY = auto()

    @property
    def code(self) -> str:
        """The CID 7050 code value (scheme DCM) of a single option."""
        return _CODES[self][0]

    @property
    def meaning(self) -> str:
        """The CID 7050 code meaning of a single option."""
        return _CODES[self][1]

    @property
    def column(self) -> str | None:
        """The Table E.1-1 column of a single option (None for Basic)."""
        return _CODES[self][2]

    @classmethod
    def parse(cls, text: str | Option) -> Option:
        """An option from its name (``retain-uids``, ``RETAIN_UIDS``) or code (``113110``)."""
        if isinstance(text, Option):
            return text
        key = text.strip().upper().replace("-", "_").replace(" ", "_")
        for option, (code, _, _) in _CODES.items():
            if key in (option.name, code):
                return option
        names = ", ".join(o.name.lower().replace("_", "-") for o in _CODES if o.name)
        raise InputError(f"unknown de-identification option {text!r}; known: {names}")

    def members(self) -> list[Option]:
        """The single options set in this flag, in code order."""
        return sorted((o for o in _CODES if o in self), key=lambda o: o.code)


_CODES: dict[Option, tuple[str, str, str | None]] = {
    Option.BASIC: ("113100", "Basic Application Confidentiality Profile", None),
    Option.CLEAN_STRUCTURED_CONTENT: (
        "113104",
        "Clean Structured Content Option",
        "structured_content",
    ),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option", "descriptors"),
    Option.RETAIN_LONG_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
        "full_dates",
    ),
    Option.RETAIN_LONG_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
        "modified_dates",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: (
        "113108",
        "Retain Patient Characteristics Option",
        "patient",
    ),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option", "device"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option", "uids"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option", "safe_private"),
    Option.RETAIN_INSTITUTION_IDENTITY: (
        "113112",
        "Retain Institution Identity Option",
        "institution",
    ),
}

#: What ADIT keeps through dicognito's ValueKeeper: the dates and times of the study,
#: series, acquisition and content, so that a research copy can still be ordered in time.
ADIT_KEPT_DATES: frozenset[str] = frozenset(
    {
        "StudyDate",
        "StudyTime",
        "SeriesDate",
        "SeriesTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "AcquisitionDateTime",
        "ContentDate",
        "ContentTime",
    }
)

_MAX_LO = 64


def _check_lo(name: str, value: str | None) -> None:
    if value is None:
        return
    if not value.strip() or len(value) > _MAX_LO or "\\" in value or not value.isprintable():
        raise InputError(f"{name} must be 1-{_MAX_LO} printable characters without backslash")


@dataclass(frozen=True, repr=False)
class Profile:
    """What to remove, replace and keep, and the values to write.

    Parameters
    ----------
    options:
        Options claimed; :attr:`Option.BASIC` is always added. Full and modified dates
        exclude each other.
    safe_private:
        Allow-list used with :attr:`Option.RETAIN_SAFE_PRIVATE` (default: the packaged
        subset of PS3.15 Table E.3.10-1).
    pseudonym:
        Written as PatientID and PatientName. None: derived per patient from the secret.
    trial_id, trial_name:
        Written as ClinicalTrialProtocolID / ClinicalTrialProtocolName when given.
    date_shift_days:
        Modified-dates option: each patient's dates move by 1 to this many days, earlier or
        later, by an amount derived from the secret and the PatientID.
    pseudonym_prefix, pseudonym_length:
        Shape of derived pseudonyms: prefix + this many base-36 characters.
    burned_in_policy:
        Instances that may carry burned-in text: refuse (raise), warn (log) or allow.
    keep:
        Keywords kept verbatim whatever the table says (ADIT's "skip elements").
    """

    options: Option = Option.BASIC
    safe_private: tuple[SafePrivate, ...] = field(default_factory=load_safe_private)
    pseudonym: str | None = None
    trial_id: str | None = None
    trial_name: str | None = None
    date_shift_days: int = 365
    pseudonym_prefix: str = "WB"
    pseudonym_length: int = 10
    burned_in_policy: BurnedInPolicy = BurnedInPolicy.REFUSE
    keep: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        options = self.options
        if not isinstance(options, Option):
            raise InputError("options must be an Option flag")
        object.__setattr__(self, "options", options | Option.BASIC)
        both = Option.RETAIN_LONG_FULL_DATES | Option.RETAIN_LONG_MODIFIED_DATES
        if both in options:
            raise InputError("full dates and modified dates are exclusive options")
        _check_lo("pseudonym", self.pseudonym)
        _check_lo("trial_id", self.trial_id)
        _check_lo("trial_name", self.trial_name)
        if not 1 <= self.date_shift_days <= 36500:
            raise InputError("date_shift_days must be between 1 and 36500")
        if not 6 <= self.pseudonym_length <= 40:
            raise InputError("pseudonym_length must be between 6 and 40")
        prefix = self.pseudonym_prefix
        if len(prefix) + self.pseudonym_length > _MAX_LO or not prefix.isascii() or "\\" in prefix:
            raise InputError("pseudonym_prefix must be short ASCII without backslash")
        object.__setattr__(self, "burned_in_policy", BurnedInPolicy(self.burned_in_policy))
        object.__setattr__(self, "safe_private", tuple(self.safe_private))
        keep = frozenset(self.keep)
        from pydicom.datadict import tag_for_keyword

        unknown = sorted(k for k in keep if tag_for_keyword(k) is None)
        if unknown:
            raise InputError(f"keep: unknown DICOM keywords {unknown}")
        object.__setattr__(self, "keep", keep)

    # -- presets -------------------------------------------------------------------
    @classmethod
    def adit(
        cls,
        pseudonym: str | None = None,
        *,
        trial_id: str | None = None,
        trial_name: str | None = None,
        **kwargs: Any,
    ) -> Profile:
        """ADIT-compatible preset.

        PatientID and PatientName become the pseudonym; study, series, acquisition and
        content dates and times are kept; patient characteristics and (cleaned)
        descriptions are kept as ADIT's dicognito keeps them; the trial protocol ID and
        name and ADIT's PatientComments line are written when given. Unlike ADIT, private
        attributes are removed.
        """
        options = kwargs.pop(
            "options",
            Option.BASIC | Option.RETAIN_PATIENT_CHARACTERISTICS | Option.CLEAN_DESCRIPTORS,
        )
        keep = frozenset(kwargs.pop("keep", frozenset())) | ADIT_KEPT_DATES
        return cls(
            options=options,
            pseudonym=pseudonym,
            trial_id=trial_id,
            trial_name=trial_name,
            keep=keep,
            **kwargs,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Profile:
        """A profile whose defaults (burned-in policy, pseudonym shape, date shift) come
        from the workbench settings; ``kwargs`` override them."""
        base: dict[str, Any] = {
            "burned_in_policy": settings.burned_in_policy,
            "pseudonym_prefix": settings.pseudonym_prefix,
            "pseudonym_length": settings.pseudonym_length,
            "date_shift_days": settings.date_shift_days,
        }
        base.update(kwargs)
        return cls(**base)

    @classmethod
    def with_options(cls, names: Iterable[str | Option], **kwargs: Any) -> Profile:
        """A profile from option names or codes (as the CLI receives them)."""
        options = Option.BASIC
        for name in names:
            options |= Option.parse(name)
        return cls(options=options, **kwargs)

    # -- derived facts ---------------------------------------------------------------
    @property
    def temporal_information(self) -> str:
        """Value of LongitudinalTemporalInformationModified this profile produces."""
        if Option.RETAIN_LONG_MODIFIED_DATES in self.options:
            return "MODIFIED"
        if Option.RETAIN_LONG_FULL_DATES in self.options or self.keep & ADIT_KEPT_DATES:
            return "UNMODIFIED"
        return "REMOVED"

    def method_description(self) -> str:
        """Free text for DeidentificationMethod (at most 64 characters)."""
        codes = "+".join(o.code[-2:] for o in self.options.members() if o is not Option.BASIC)
        text = "adit_workbench PS3.15 E.1-1 Basic"
        return f"{text} +{codes}" if codes else text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record of the profile (the pseudonym itself included)."""
        return {
            "options": [o.name for o in self.options.members()],
            "codes": [o.code for o in self.options.members()],
            "pseudonym": self.pseudonym,
            "trial_id": self.trial_id,
            "trial_name": self.trial_name,
            "date_shift_days": self.date_shift_days,
            "pseudonym_prefix": self.pseudonym_prefix,
            "pseudonym_length": self.pseudonym_length,
            "burned_in_policy": str(self.burned_in_policy),
            "keep": sorted(self.keep),
            "safe_private": [
                {"creator": s.creator, "group": f"{s.group:04X}", "element": f"{s.element:02X}"}
                for s in self.safe_private
            ],
        }

    def __repr__(self) -> str:
        # The dataclass repr printed the whole safe-private allow-list (a screen of it).
        shown = [f"options={'|'.join(o.name or '' for o in self.options.members())}"]
        for name in ("pseudonym", "trial_id", "trial_name"):
            if getattr(self, name) is not None:
                shown.append(f"{name}={getattr(self, name)!r}")
        shown += [f"date_shift_days={self.date_shift_days}",
                  f"pseudonyms={self.pseudonym_prefix}+{self.pseudonym_length}",
                  f"burned_in_policy={self.burned_in_policy.value!r}"]  # fmt: skip
        if self.keep:
            shown.append(f"keep={sorted(self.keep)}")
        shown.append(f"safe_private=<{len(self.safe_private)} entries>")
        return f"Profile({', '.join(shown)})"

    def _repr_html_(self) -> str:
        from ..dicom.display import html_fields

        return html_fields(
            "De-identification profile",
            [
                ("options", ", ".join(o.meaning for o in self.options.members())),
                ("pseudonym", self.pseudonym or f"derived: {self.pseudonym_prefix}…"),
                ("trial", " / ".join(t for t in (self.trial_id, self.trial_name) if t)),
                ("dates", f"{self.temporal_information.lower()}"
                          f" (shift up to {self.date_shift_days} days)"),
                ("burned-in", f"{self.burned_in_policy.value}"),
                ("kept as is", ", ".join(sorted(self.keep))),
                ("safe private", f"{len(self.safe_private)} allow-listed attributes"),
            ],
        )  # fmt: skip

    def replace(self, **changes: Any) -> Profile:
        """A copy with some fields changed (validated again)."""
        values: Mapping[str, Any] = {
            name: getattr(self, name) for name in self.__dataclass_fields__
        }
        return Profile(**{**values, **changes})
