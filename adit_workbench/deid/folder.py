"""Pseudonymize a folder tree into another, on all cores.

The output mirrors the input's structure. Files that are not DICOM are reported and
skipped; instances refused for possible burned-in text are reported, never dropped
silently. Work is spread over a process pool (the walk is CPU-bound Python, so threads
would share one core); each worker receives the pseudonymizer once and then batches of
paths, so per-file inter-process traffic is a path and a short status.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..config import BurnedInPolicy
from ..dicom.display import html_table, text_block
from ..dicom.part10 import Malformed, Part10, Unsupported, read_regular
from ..dicom.paths import UnsafePath, component, within
from ..errors import InputError
from .encoded import engine_for
from .profile import Option
from .pseudonymizer import BurnedInRefused, Pseudonymizer
from .splice import read_source, write_spliced

__all__ = [
    "FolderReport",
    "iter_files",
    "output_name",
    "pseudonymize_file",
    "pseudonymize_folder",
    "read_dicom",
]

_WRITTEN, _REFUSED, _SKIPPED, _FAILED, _WARNED = "written", "refused", "skipped", "failed", "warned"


@dataclass
class FolderReport:
    """What happened to each input file (paths relative to the input folder)."""

    written: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was refused or failed (skipped non-DICOM files are fine)."""
        return not self.refused and not self.failed

    def __str__(self) -> str:
        lines = [
            f"{len(self.written)} written, {len(self.refused)} refused, "
            f"{len(self.skipped)} skipped (not DICOM), {len(self.failed)} failed"
        ]
        lines += [f"refused {name}: {why}" for name, why in self.refused]
        lines += [f"failed {name}: {why}" for name, why in self.failed]
        lines += [f"skipped {name}: {why}" for name, why in self.skipped]
        lines += [f"warned {name}: may carry burned-in text" for name in self.warned]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line of counts."""
        text = (
            f"{len(self.written)} written, {len(self.refused)} refused, "
            f"{len(self.skipped)} skipped (not DICOM), {len(self.failed)} failed"
        )
        return text + (f", {len(self.warned)} with a burned-in warning" if self.warned else "")

    def _examples(self, per_kind: int = 5) -> list[tuple[str, str, str]]:
        """A few (outcome, file, why) per outcome, problems first."""
        out: list[tuple[str, str, str]] = []
        for kind, items in (("refused", self.refused), ("failed", self.failed),
                            ("skipped", self.skipped)):  # fmt: skip
            out += [(kind, name, why) for name, why in items[:per_kind]]
            if len(items) > per_kind:
                out.append((kind, f"… {len(items) - per_kind} more", ""))
        warned = [("warned", n, "may carry burned-in text") for n in self.warned[:per_kind]]
        written = [("written", n, "") for n in self.written[:3]]
        return out + warned + written

    def __repr__(self) -> str:
        status = "OK" if self.ok else "NOT OK"
        lines = [f"{kind:<8} {name}" + (f": {why}" if why else "")
                 for kind, name, why in self._examples()]  # fmt: skip
        return text_block(f"FolderReport {status}: {self.summary()}", lines)

    def _repr_html_(self) -> str:
        return html_table(
            ("outcome", "file", "why"),
            self._examples(),
            title=f"FolderReport: {self.summary()}",
            warn=not self.ok,
            note="a few examples per outcome; every file: str(report) or the lists",
        )


def iter_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder``, recursively, in a stable order (FIFOs and other
    special files included: reading refuses them by name, see
    :func:`~..dicom.part10.read_regular`)."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def read_dicom(path: str | os.PathLike[str]) -> Dataset:
    """Read a DICOM file, also one without the Part-10 preamble; raise InvalidDicomError
    for anything that does not look like a DICOM instance, ``Malformed`` for a damaged
    one (see :func:`~.splice.read_source`)."""
    return read_source(path)[0]


def pseudonymize_file(
    pseudonymizer: Pseudonymizer, src: str | os.PathLike[str], dst: str | os.PathLike[str]
) -> Dataset:
    """Read ``src``, pseudonymize it and write it to ``dst`` (parents created)."""
    ds, data = read_source(src)
    pseudonymizer(ds)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    write_spliced(ds, data, dst)
    return ds


_UID_LIKE = re.compile(r"\d+(\.\d+)+")


def output_name(pseudonymizer: Pseudonymizer, rel: Path, patient_id: str) -> Path:
    """The output path of ``rel``: same structure, but components that are UIDs are
    remapped and components equal to the PatientID become the pseudonym, because archive
    layouts (``<PatientID>/<StudyUID>/…``) would otherwise leak them in file names."""
    keep_uids = Option.RETAIN_UIDS in pseudonymizer.profile.options
    parts = []
    for part in rel.parts:
        stem, dot, ext = part.partition(".dcm") if part.endswith(".dcm") else (part, "", "")
        if _UID_LIKE.fullmatch(stem) and not keep_uids:
            stem = pseudonymizer.uid(stem)
        elif patient_id and stem == patient_id:
            # The pseudonym is user text (``--pseudonym '../../x'``): one safe component.
            stem = component(pseudonymizer.pseudonym(patient_id), "patient")
        parts.append(stem + dot + ext)
    return Path(*parts)


def _one(pseudonymizer: Pseudonymizer, src: Path, rel: Path, dst_root: Path) -> tuple[str, str]:
    try:
        data = read_regular(src)  # a FIFO named *.dcm is refused, never waited on
        part10 = Part10.parse(data)
    except Malformed as exc:
        return _REFUSED, str(exc)
    except (OSError, Unsupported):
        return _decoded(pseudonymizer, src, rel, dst_root)
    try:
        out = engine_for(pseudonymizer)(part10)
        if out is None:
            return _decoded(pseudonymizer, src, rel, dst_root)
        dst = within(dst_root, output_name(pseudonymizer, rel, part10.text("PatientID")))
        dst.parent.mkdir(parents=True, exist_ok=True)
        out.write(dst)
    except (BurnedInRefused, UnsafePath, Malformed) as exc:
        return _REFUSED, str(exc)
    except Exception as exc:  # one bad file must not stop a folder; reported, no PHI
        return _FAILED, f"{type(exc).__name__}"
    return (_WARNED if out.warned else _WRITTEN), ""


def _decoded(pseudonymizer: Pseudonymizer, src: Path, rel: Path, dst_root: Path) -> (
    tuple[str, str]
):  # fmt: skip
    """The pydicom path, for what the encoded engine leaves to it."""
    try:
        ds, data = read_source(src)
    except Malformed as exc:
        return _REFUSED, str(exc)
    except OSError as exc:
        return _FAILED, f"unreadable: {exc.strerror or type(exc).__name__}"
    except (InvalidDicomError, EOFError, ValueError, KeyError, NotImplementedError) as exc:
        return _SKIPPED, type(exc).__name__
    try:
        risky = pseudonymizer.burned_in_risk(ds)
        dst = within(dst_root, output_name(pseudonymizer, rel, str(ds.get("PatientID", "") or "")))
        pseudonymizer(ds)
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_spliced(ds, data, dst)
    except (BurnedInRefused, UnsafePath) as exc:
        return _REFUSED, str(exc)
    except Exception as exc:  # one bad file must not stop a folder; reported, no PHI
        return _FAILED, f"{type(exc).__name__}"
    warned = risky and pseudonymizer.profile.burned_in_policy is BurnedInPolicy.WARN
    return (_WARNED if warned else _WRITTEN), ""


_WORKER: Pseudonymizer | None = None


def _init_worker(pseudonymizer: Pseudonymizer) -> None:
    global _WORKER
    _WORKER = pseudonymizer


def _batch(jobs: Sequence[tuple[Path, Path, Path]]) -> list[tuple[str, str]]:
    assert _WORKER is not None
    return [_one(_WORKER, src, rel, dst_root) for src, rel, dst_root in jobs]


def _chunks(
    items: list[tuple[Path, Path, Path]], n: int
) -> Iterable[list[tuple[Path, Path, Path]]]:
    size = max(1, min(64, len(items) // (n * 4) or 1))
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pseudonymize_folder(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    pseudonymizer: Pseudonymizer,
    *,
    workers: int | None = None,
) -> FolderReport:
    """Pseudonymize every DICOM file under ``in_dir`` into the same structure under ``out_dir``.

    ``workers``: processes to use (default ``os.cpu_count()``; 1 runs in this process).
    """
    src_root, dst_root = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not src_root.is_dir():
        raise InputError(f"input folder {in_dir} does not exist or is not a folder")
    if dst_root == src_root or src_root in dst_root.parents:
        raise InputError("the output folder must not be the input folder or inside it")
    jobs = [(p, p.relative_to(src_root), dst_root) for p in iter_files(src_root)]
    n = max(1, workers if workers is not None else (os.cpu_count() or 1))
    if n == 1 or len(jobs) < 8:
        results = [_one(pseudonymizer, *job) for job in jobs]
    else:
        results = []
        with ProcessPoolExecutor(
            max_workers=n, initializer=_init_worker, initargs=(pseudonymizer,)
        ) as pool:
            for part in pool.map(_batch, _chunks(jobs, n)):
                results.extend(part)
    report = FolderReport()
    for (_, rel, _), (status, why) in zip(jobs, results, strict=True):
        name = str(rel)
        if status == _WRITTEN:
            report.written.append(name)
        elif status == _WARNED:
            report.written.append(name)
            report.warned.append(name)
        elif status == _REFUSED:
            report.refused.append((name, why))
        elif status == _SKIPPED:
            report.skipped.append((name, why))
        else:
            report.failed.append((name, why))
    return report
