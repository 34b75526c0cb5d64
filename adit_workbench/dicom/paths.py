"""Every path built from a DICOM value or from user text goes through here.

A UID, a PatientID, a pseudonym or a SeriesDescription comes from a file or a person the
workbench does not control. As a path component it must not climb out of its folder
(``..``, separators, an absolute path), hide a file (a leading dot: our staging folders
are hidden), name a device on Windows (``CON``, ``NUL``, ``COM1``…), or break a terminal
or a shell (control characters). And two *different* values must not land on the same
name: a value that had to be changed to become safe carries a short hash of the original,
so ``../a`` and ``_a`` stay two files, while the same value always gives the same name
(a re-run still recognises what is already there).

:func:`component` makes one component, :func:`uid_component` one from a UID (a valid UID
is kept as it is), :func:`within` joins components below a root and checks the result
after resolving it (a symlinked folder cannot lead outside either), and
:func:`free_name` picks a distinct file name when a different instance already holds
the wanted one.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ..errors import InputError

__all__ = [
    "MAX_COMPONENT",
    "UnsafePath",
    "component",
    "free_name",
    "instance_file",
    "is_uid",
    "uid_component",
    "within",
]

#: Longest component (bytes stay under the 255 of common file systems, hash included).
MAX_COMPONENT = 120
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
#: Names Windows reserves for devices, with or without an extension (case-insensitive).
_RESERVED = re.compile(r"(?i)(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³]|CONIN\$|CONOUT\$)(\..*)?")
#: A UID as UIDs are: digits and dots, no empty part, at most 64 characters.
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_LOOSE_UID = re.compile(r"[0-9](?:[0-9.]{0,62}[0-9])?")


class UnsafePath(InputError):
    """A path built from a value would lie outside its root."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        "_" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") else c for c in text
    )
    return _UNSAFE.sub("_", text).strip().rstrip(". ").lstrip(".")


def component(value: object, fallback: str = "Undefined", *, unique: bool = True) -> str:
    """One safe path component for ``value`` (``fallback`` when nothing is left).

    Separators, ``<>:"|?*``, control and format characters become ``_``; leading dots
    and trailing dots or spaces are dropped; a Windows device name is prefixed with
    ``_``; the length is capped at :data:`MAX_COMPONENT`. With ``unique`` (for values
    that identify something: UIDs, IDs, pseudonyms), a value that had to change beyond
    its surrounding blanks gets a hash of the original appended, so that distinct values
    keep distinct names; without it (descriptions in folder names) the readable form is
    enough.
    """
    raw = "" if value is None else str(value)
    wanted = raw.strip()
    text = _clean(raw)
    if _RESERVED.fullmatch(text):
        text = "_" + text
    changed = text != wanted or len(text) > MAX_COMPONENT
    if not unique or not changed:
        return text[:MAX_COMPONENT] or fallback
    return f"{(text or fallback)[: MAX_COMPONENT - 11]}~{_digest(raw)}"


def is_uid(value: str) -> bool:
    """Whether ``value`` is a well-formed UID (so safe as a path component as it is)."""
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def uid_component(uid: object, fallback: str = "unknown") -> str:
    """A UID as a path component: kept if it looks like one, else made safe (and hashed).

    Legacy UIDs with a leading zero in a part are kept too: they are digits and dots,
    harmless on every file system.
    """
    text = "" if uid is None else str(uid).strip().rstrip("\0").strip()
    if text and _LOOSE_UID.fullmatch(text) and ".." not in text:
        return text
    return component(uid, fallback)


def within(root: str | os.PathLike[str], *parts: str | os.PathLike[str]) -> Path:
    """``root / parts``, refused with :class:`UnsafePath` unless it stays below ``root``.

    ``parts`` should already be safe components (or relative paths of them); the check
    is made after resolving symlinks, so neither an absolute part, a ``..``, nor a
    symlinked folder can lead elsewhere.
    """
    base = Path(root)
    target = base.joinpath(*parts)
    for part in PurePosixPath(*[os.fspath(p) for p in parts]).parts if parts else ():
        if part in ("..", "/") or os.path.isabs(part):
            raise UnsafePath(f"path part {part!r} would leave {base}")
    resolved_root = base.resolve()
    resolved = target.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafePath(f"a path below {base} resolves outside it")
    return target


def instance_file(
    root: str | os.PathLike[str], study_uid: object, series_uid: object, sop_uid: object
) -> Path:
    """``<root>/<study>/<series>/<sop>.dcm`` with every UID made safe, checked below root."""
    return within(
        root,
        uid_component(study_uid),
        uid_component(series_uid),
        f"{uid_component(sop_uid, 'instance')}.dcm",
    )


def free_name(target: Path, same: Callable[[Path], bool]) -> tuple[Path, bool]:
    """Where an instance goes when ``target`` may already be taken: ``(path, already)``.

    ``same(path)`` says whether the file at ``path`` holds this very instance. The first
    of ``target``, ``stem~2.ext``, ``stem~3.ext`` … that is free or holds the same
    instance is returned, with ``already`` true in the second case: a distinct instance
    is never dropped as if it were already there.
    """
    candidate = target
    for n in range(2, 1000):
        if not candidate.exists():
            return candidate, False
        if same(candidate):
            return candidate, True
        candidate = target.with_name(f"{target.stem}~{n}{target.suffix}")
    raise UnsafePath(f"too many distinct instances named {target.name}")
