"""Pseudonymization: PS3.15 Annex E profile as data, keyed pseudonyms, leak scanner.

Typical use::

    from adit_workbench.deid import Option, Profile, Pseudonymizer, pseudonymize_folder

    profile = Profile(Option.RETAIN_LONG_MODIFIED_DATES | Option.RETAIN_PATIENT_CHARACTERISTICS)
    pseudonymizer = Pseudonymizer(secret, profile)
    pseudonymizer(ds)                                   # in place
    report = pseudonymize_folder("in", "out", pseudonymizer)
    leaks = scan_leaks(originals, outputs)              # falsy when nothing leaked

Conformance (PS3.2 N.11.2.6): replacement UIDs, pseudonyms and date shifts are keyed on the
secret alone, so referential integrity holds across instances, series, studies and jobs
that share a key, and re-processing the same input gives the same output byte for byte.
Without the key, an original UID cannot be confirmed from its replacement.
"""

from .explain import ExplainRow, Explanation, explain, mask
from .folder import FolderReport, iter_files, pseudonymize_file, pseudonymize_folder, read_dicom
from .keys import date_shift, keyed_uid, project_key, pseudonym_for
from .leaks import KINDS, Leak, LeakReport, collect_identifiers, scan_leaks
from .profile import ADIT_KEPT_DATES, Option, Profile
from .project import project_pseudonymizer
from .pseudonymizer import BURNED_IN_MODALITIES, BurnedInRefused, Pseudonymizer
from .rules import Rule, Rules, compile_rules
from .table import Action, SafePrivate, TableRow, load_safe_private, load_table

__all__ = [
    "ADIT_KEPT_DATES",
    "BURNED_IN_MODALITIES",
    "KINDS",
    "Action",
    "BurnedInRefused",
    "ExplainRow",
    "Explanation",
    "FolderReport",
    "Leak",
    "LeakReport",
    "Option",
    "Profile",
    "Pseudonymizer",
    "Rule",
    "Rules",
    "SafePrivate",
    "TableRow",
    "collect_identifiers",
    "compile_rules",
    "date_shift",
    "explain",
    "iter_files",
    "keyed_uid",
    "load_safe_private",
    "load_table",
    "mask",
    "project_key",
    "project_pseudonymizer",
    "pseudonym_for",
    "pseudonymize_file",
    "pseudonymize_folder",
    "read_dicom",
    "scan_leaks",
]
