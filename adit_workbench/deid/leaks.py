"""Leak scanner: does any identifying value of the originals survive in the output?

Identifying values are collected from the originals (names, IDs, dates, addresses and
phone numbers, instance UIDs, institutions, staff, private values), everywhere: nested
sequences, private blocks and file meta. Every output file is then searched twice: element
by element (values, sequences, private blocks, file meta), and as raw bytes (printable runs
anywhere in the file: preamble, pixel data, trailing bytes) for what the parser cannot see.

Matching is by whole value and by token (a name's components, a DT's date), case-
insensitive, so ``DOE`` does not match ``DOERING`` and an instance UID does not match a
longer one that contains it. The report names file, location and kind, and masks values.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary

from ..dicom.display import html_table, text_block
from ..dicom.part10 import Malformed, read_regular
from ..errors import InputError
from .explain import mask
from .rules import DEFINITION_UID_SUFFIXES, DEFINITION_UIDS, describe_tag
from .table import load_table

__all__ = ["KINDS", "Leak", "LeakReport", "collect_identifiers", "scan_leaks"]

#: Kinds of identifying value the scanner knows.
KINDS = ("name", "person", "id", "date", "address", "uid", "institution", "device", "private")

_PATIENT_NAMES = {"PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName"}
#: Attributes naming vendors, software and coding schemes: a hospital named like its
#: scanner's vendor, or a name that is also a coding scheme, must not count as a leak there.
_BENIGN = frozenset(
    {
        "ImplementationClassUID",
        "ImplementationVersionName",
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
    }
)
#: Values the pseudonymizer writes itself; never counted as leaks.
_OURS = {"anonymous", "anonymized", "19000101", "000000", "19000101000000", "yes", "no"}
_SEGMENT = re.compile(r"[\x00\\]+")
_TOKEN = re.compile(r"[\x00\\^=\s,;:()\[\]\"'_/-]+")
_PRINTABLE = re.compile(rb"[\x20-\x7e]{4,}")
_NUMERIC = re.compile(r"[-+0-9.eE ]+")
_SKIP_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}


@dataclass(frozen=True, slots=True)
class Leak:
    """One original identifying value found in one output."""

    file: str
    location: str
    kind: str
    source: str
    masked: str

    def __str__(self) -> str:
        return f"{self.file}: {self.location}: {self.kind} (from {self.source}) {self.masked}"


@dataclass
class LeakReport:
    """The scan result. Falsy when nothing leaked; ``str()`` is the printable report."""

    leaks: list[Leak] = field(default_factory=list)
    files_scanned: int = 0
    values_collected: int = 0
    unreadable: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.leaks)

    @property
    def clean(self) -> bool:
        """True when no identifying value was found in any output."""
        return not self.leaks

    def by_kind(self) -> dict[str, int]:
        """Number of leaks per kind."""
        counts: dict[str, int] = {}
        for leak in self.leaks:
            counts[leak.kind] = counts.get(leak.kind, 0) + 1
        return counts

    def __str__(self) -> str:
        head = (
            f"{len(self.leaks)} leak(s) in {self.files_scanned} file(s) "
            f"({self.values_collected} identifying values checked)"
        )
        lines = [head, *(str(leak) for leak in self.leaks)]
        lines += [f"unreadable: {name}" for name in self.unreadable]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: clean or how many leaks of which kind."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.by_kind().items()))
        head = "clean" if self.clean else f"{len(self.leaks)} leak(s) ({kinds})"
        text = f"{head} in {self.files_scanned} file(s), {self.values_collected} values checked"
        return text + (f", {len(self.unreadable)} unreadable" if self.unreadable else "")

    def __repr__(self) -> str:
        lines = [str(leak) for leak in self.leaks]
        lines += [f"unreadable: {name}" for name in self.unreadable]
        return text_block(f"LeakReport: {self.summary()}", lines, max_lines=21)

    def _repr_html_(self) -> str:
        return html_table(
            ("file", "where", "kind", "from", "value (masked)"),
            ((x.file, x.location, x.kind, x.source, x.masked) for x in self.leaks),
            title=f"LeakReport: {self.summary()}",
            warn=not self.clean,
            total=len(self.leaks),
            note="every leak: report.leaks" if self.leaks else "",
        )


@lru_cache(maxsize=1)
def _table_keywords() -> tuple[frozenset[str], frozenset[str]]:
    """(keywords of Table E.1-1, those the device-identity option keeps)."""
    rows = load_table()
    listed = frozenset(r.keyword for r in rows if r.keyword)
    device = frozenset(r.keyword for r in rows if r.keyword and r.options.get("device") == "K")
    return listed, device


def _kind(keyword: str, vr: str, private: bool) -> str | None:
    """The kind of identifying value an element holds, or None if it is not one.

    Names, UIDs and dates count wherever they are; other attributes only when Table
    E.1-1 lists them, so the scanner's idea of identifying is the standard's.
    """
    if private:
        return "private"
    if vr == "UI":
        definition = keyword in DEFINITION_UIDS or keyword.endswith(DEFINITION_UID_SUFFIXES)
        return None if definition or keyword in _BENIGN else "uid"
    if vr == "PN":
        return "name" if keyword in _PATIENT_NAMES else "person"
    if vr in ("DA", "DT"):
        return "date"
    listed, device = _table_keywords()
    if keyword not in listed:
        return None
    if any(w in keyword for w in ("Address", "Telephone", "Telecom")):
        return "address"
    if keyword.startswith("Institution") or "Issuer" in keyword:
        # an issuer of IDs is an organisation: retained with the institution's identity
        return "institution"
    if keyword in device:
        return "device"
    if keyword.endswith(("ID", "IDs", "Number", "Identifier", "Locator")):
        return "id"
    return None


def _values(value: Any) -> Iterator[str]:
    if isinstance(value, MultiValue | list | tuple):
        for v in value:
            yield from _values(v)
    elif isinstance(value, bytes | bytearray):
        if len(value) <= 1024:
            yield value.decode("latin-1").strip("\x00 ")
    elif value is not None and value != "":
        yield str(value).strip("\x00 ")


def _elements(ds: Dataset, path: str = "") -> Iterator[tuple[str, int, str, str, Any]]:
    """(location, tag, keyword, VR, value) of every element, sequences flattened."""
    meta = getattr(ds, "file_meta", None) if not path else None
    if meta is not None:
        for elem in meta:
            yield f"file meta {elem.keyword}", int(elem.tag), elem.keyword, elem.VR, elem.value
    for elem in ds:
        tag = int(elem.tag)
        if tag in _SKIP_TAGS:
            continue
        keyword = elem.keyword or ""
        where = f"{path}{keyword or 'private ' + str(BaseTag(tag))}"
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value or Sequence()):
                yield from _elements(item, f"{where}[{index}].")
        else:
            yield where, tag, keyword, elem.VR, elem.value


class _Needles:
    """Identifying values indexed for whole-value and token lookup."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        self.phrases: dict[str, tuple[str, str]] = {}

    def add(self, text: str, kind: str, source: str) -> None:
        key = text.strip().lower()
        if len(key) < 4 or key in _OURS:
            return
        if kind not in ("uid", "date", "id") and _NUMERIC.fullmatch(key):
            return  # numbers (private DS/IS values …) are not identifying on their own
        self.values.setdefault(key, (kind, source))
        if kind in ("name", "person"):
            for part in _TOKEN.split(key):
                if len(part) >= 4 and part not in _OURS:
                    self.values.setdefault(part, (kind, source))
        elif " " in key and len(key) >= 8:
            self.phrases.setdefault(key, (kind, source))

    def find(self, text: str) -> Iterator[tuple[str, str, str]]:
        """(matched value, kind, source) for every needle in ``text``."""
        low = text.lower()
        seen: set[str] = set()
        for piece in (*_SEGMENT.split(low), *_TOKEN.split(low)):
            hit = self.values.get(piece)
            if hit is None and len(piece) > 8 and piece[:8].isdigit():
                hit = self.values.get(piece[:8])  # the date of a DT
                piece = piece[:8]
            if hit is not None and piece not in seen:
                seen.add(piece)
                yield piece, *hit
        for phrase, hit in self.phrases.items():
            if phrase in low and phrase not in seen:
                seen.add(phrase)
                yield phrase, *hit

    def __len__(self) -> int:
        return len(self.values) + len(self.phrases)


def collect_identifiers(ds: Dataset) -> dict[str, tuple[str, str]]:
    """Identifying values of one dataset: ``{value: (kind, source keyword)}``."""
    needles = _Needles()
    _collect(ds, needles)
    return {**needles.values, **needles.phrases}


def _collect(ds: Dataset, needles: _Needles) -> None:
    public: set[str] = set()
    identifying: dict[str, tuple[str, str]] = {}
    private: list[tuple[str, str]] = []
    for _, tag, keyword, vr, value in _elements(ds):
        is_private = bool((tag >> 16) & 1)
        if is_private and 0x10 <= tag & 0xFFFF <= 0xFF:
            continue  # private creator names identify a vendor, not a patient
        kind = _kind(keyword, vr, is_private)
        for text in _values(value):
            if kind == "private":
                private.append((text, describe_tag(tag)))
            elif kind == "uid" and text in UID_dictionary:
                continue
            elif kind is not None:
                needles.add(text, kind, keyword)
                for token in (text.lower(), *_TOKEN.split(text.lower())):
                    identifying.setdefault(token, (kind, keyword))
            else:
                public.add(text.lower())
    for text, source in private:
        key = text.lower()
        if key in identifying:
            # A vendor block repeating a public value (the station name, say) is that
            # value: it is judged by the public attribute's kind, so retaining the
            # device identity also retains its private copy.
            needles.add(text, *identifying[key])
        elif key not in public:
            needles.add(text, "private", source)


def _read(item: Path | str | Dataset) -> Dataset:
    if isinstance(item, Dataset):
        return item
    return pydicom.dcmread(io.BytesIO(read_regular(item)), force=True)  # never a FIFO


def scan_leaks(
    originals: Iterable[Path | str | Dataset],
    outputs: Iterable[Path | str],
    *,
    ignore: Iterable[str] = (),
    output_root: Path | str | None = None,
) -> LeakReport:
    """Report every identifying value of ``originals`` found anywhere in ``outputs``.

    ``ignore`` names kinds (see :data:`KINDS`) that the profile keeps on purpose, e.g.
    ``"date"`` for the full-dates option. File names are checked too: the file's own
    name, and its folders below ``output_root`` when given.
    """
    ignored = set(ignore)
    unknown = ignored - set(KINDS)
    if unknown:
        raise InputError(f"unknown leak kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    needles = _Needles()
    report = LeakReport()
    for item in originals:
        try:
            _collect(_read(item), needles)
        except Exception:  # anything pydicom cannot parse is not an original to learn from
            report.unreadable.append(str(item))
    for kind_map in (needles.values, needles.phrases):
        for key in [k for k, (kind, _) in kind_map.items() if kind in ignored]:
            del kind_map[key]
    report.values_collected = len(needles)
    root = Path(output_root).resolve() if output_root is not None else None
    for path in outputs:
        report.files_scanned += 1
        try:
            data = read_regular(path)  # a FIFO or device is refused, never waited on
        except (OSError, Malformed) as exc:
            report.unreadable.append(f"{path} ({exc})")
            continue
        elements: list[tuple[str, int, str, str, Any]]
        try:
            elements = list(_elements(pydicom.dcmread(io.BytesIO(data), force=True)))
        except Exception:  # not parseable: its raw bytes are still searched
            elements = []
            report.unreadable.append(f"{path} (not DICOM: raw bytes scanned)")
        _scan_one(str(path), _name_to_check(Path(path), root), elements, data, needles, report)
    return report


def _name_to_check(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root))
        except ValueError:
            pass
    return path.name


def _scan_one(
    name: str,
    file_name: str,
    elements: list[tuple[str, int, str, str, Any]],
    data: bytes,
    needles: _Needles,
    report: LeakReport,
) -> None:
    found: set[str] = set()
    benign: set[str] = set()
    for hit, kind, source in needles.find(file_name):
        found.add(hit)
        report.leaks.append(Leak(name, "file name", kind, source, mask(hit)))
    for location, _, keyword, _, value in elements:
        sources: set[str] = set()  # one leak per location and source: "DOE" and "JOHN" are one
        for text in _values(value):
            for hit, kind, source in needles.find(text):
                if keyword in _BENIGN:
                    benign.add(hit)
                    continue
                found.add(hit)
                if source not in sources:
                    sources.add(source)
                    report.leaks.append(Leak(name, location, kind, source, mask(hit)))
    for match in _PRINTABLE.finditer(data):
        run = match.group().decode("ascii")
        for hit, kind, source in needles.find(run):
            if hit not in found and hit not in benign:
                found.add(hit)
                where = f"raw bytes at offset {match.start()}"
                report.leaks.append(Leak(name, where, kind, source, mask(hit)))
