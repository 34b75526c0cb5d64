"""A Python every OS account may run: the test venv's interpreter and packages, outside /root.

Hub user servers and the workbench service run as their own unprivileged OS accounts, and
each must execute the project's Python. The test venv is built from a pyenv interpreter
under ``/root/.pyenv`` and ``/root`` is mode 0700 on these machines, so no other account
can run it (its ``bin/python`` is a symlink into /root). Opening /root to everyone would
expose root's files; this builds, per test session, in a world-readable temporary dir:

* ``interpreter/``: the base interpreter's ``bin/python3.X``, ``lib/libpython*`` and
  standard library (no ``site-packages``, no ``test``), hard links where the file system
  allows (a fraction of a second), copies otherwise. The executable's ELF ``RUNPATH``
  names the old ``…/lib`` where libpython lives; it is rewritten to ``$ORIGIN/../lib``
  in the copied binary (padded with NULs, the way conda relocates binaries), as the
  loader would otherwise not find libpython for an account that cannot enter /root.
* ``venv/``: a virtualenv on that interpreter whose ``lib``, ``share``, ``etc`` … are the
  test venv's own (symlinks: the same installed packages, kernelspecs and Jupyter server
  extensions), and whose ``bin/`` scripts are the test venv's with their ``#!`` line
  pointing at ``venv/bin/python``.

When the checkout itself is private (a clone inside /root), the venv's folders and the
project's package are hard-linked into the shared dir instead of symlinked.

Fixture: ``shared_python`` (session) → (the ``bin`` dir of that venv, the folder to put
on ``PYTHONPATH``), or skips (fails in CI) with the reason (see :func:`unavailable`).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers._util import IN_CI

VENV = Path(sys.prefix)
_NEW_RUNPATH = b"$ORIGIN/../lib"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def _copy_interpreter(base: Path, target: Path) -> Path:
    """The base interpreter under ``target``; returns its ``bin/python3.X``."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (target / "bin").mkdir(parents=True)
    (target / "lib").mkdir()
    shutil.copytree(
        base / "lib" / version,
        target / "lib" / version,
        ignore=shutil.ignore_patterns("site-packages", "test"),
        copy_function=_link_or_copy,
        symlinks=True,
    )
    for library in (base / "lib").glob("libpython*"):
        if library.is_symlink():
            (target / "lib" / library.name).symlink_to(os.readlink(library))
        else:
            _link_or_copy(str(library), str(target / "lib" / library.name))
    executable = Path(os.path.realpath(sys.executable))
    binary = executable.read_bytes()
    libdir = str(sysconfig.get_config_var("LIBDIR") or base / "lib").encode()
    if len(libdir) >= len(_NEW_RUNPATH):
        padded = _NEW_RUNPATH + b"\0" * (len(libdir) - len(_NEW_RUNPATH))
        binary = binary.replace(libdir + b"\0", padded + b"\0")
    python = target / "bin" / version
    python.write_bytes(binary)  # a new file, never a hard link to the original
    python.chmod(0o755)
    return python


def _venv_over(interpreter: Path, venv: Path) -> Path:
    """A venv on ``interpreter`` that shares everything but ``bin/`` with :data:`VENV`."""
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True)
    for entry in VENV.iterdir():
        if entry.name in ("bin", "pyvenv.cfg"):
            continue
        if entry.is_symlink() and not os.path.isabs(os.readlink(entry)):
            (venv / entry.name).symlink_to(os.readlink(entry))  # lib64 -> lib
        elif private_part(entry) is None:
            (venv / entry.name).symlink_to(entry)
        elif entry.is_dir():  # a checkout in a private folder: links to its files instead
            shutil.copytree(entry, venv / entry.name, copy_function=_link_or_copy, symlinks=True)
    cfg = (VENV / "pyvenv.cfg").read_text().splitlines()
    kept = [line for line in cfg if line.split("=")[0].strip() not in ("home", "executable")]
    (venv / "pyvenv.cfg").write_text(
        "\n".join([f"home = {interpreter.parent}", *kept, f"executable = {interpreter}"]) + "\n"
    )
    old_shebang = f"#!{VENV / 'bin'}/".encode()
    for entry in (VENV / "bin").iterdir():
        if entry.name.startswith("python"):
            continue
        if entry.is_file() and not entry.is_symlink():
            content = entry.read_bytes()
            if content.startswith(old_shebang):
                (bin_dir / entry.name).write_bytes(
                    f"#!{bin_dir}/".encode() + content[len(old_shebang) :]
                )
                (bin_dir / entry.name).chmod(0o755)
                continue
        (bin_dir / entry.name).symlink_to(entry)
    for name in ("python", "python3", interpreter.name):
        (bin_dir / name).symlink_to(interpreter)
    return bin_dir


def private_part(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other accounts cannot enter or read."""
    path = Path(os.path.realpath(path))
    for folder in [*reversed(path.parents), path]:
        mode = folder.stat().st_mode
        needed = stat.S_IXOTH | (stat.S_IROTH if folder == path and not folder.is_dir() else 0)
        if mode & needed != needed:
            return folder
    return None


def build(target: Path, repo: Path) -> tuple[Path, Path]:
    """Build the shared interpreter and venv under ``target``.

    Returns the venv's bin dir and the folder to put on ``PYTHONPATH`` for the project's
    package: ``repo`` itself, or hard links to its package when ``repo`` is private.
    """
    base = Path(sys.base_prefix)
    interpreter = _copy_interpreter(base, target / "interpreter")
    bin_dir = _venv_over(interpreter, target / "venv")
    source = repo
    if private_part(repo / "adit_workbench") is not None:
        source = target / "src"
        shutil.copytree(
            repo / "adit_workbench",
            source / "adit_workbench",
            copy_function=_link_or_copy,  # .pyc files too: still valid (same mtimes)
        )
    for dirpath, dirnames, _ in os.walk(target):
        for name in dirnames:
            folder = Path(dirpath) / name
            if not folder.is_symlink():
                folder.chmod(folder.stat().st_mode | 0o555)
    target.chmod(0o755)
    return bin_dir, source


def unavailable() -> str | None:
    """Why user servers cannot run as other OS accounts here (None: they can)."""
    if os.geteuid() != 0:
        return "user servers as their own OS accounts need root (to create the accounts)"
    if sys.prefix == sys.base_prefix:
        return "run the tests from the project's virtualenv (make venv)"
    return None


@pytest.fixture(scope="session")
def shared_python() -> Iterator[tuple[Path, Path]]:
    """(``bin`` of a venv every account may run, its ``PYTHONPATH`` for the project).

    Skips when impossible (not root), fails instead in CI.
    """
    why = unavailable()
    if why is not None:
        if IN_CI:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    target = Path(tempfile.mkdtemp(prefix="wb-python-"))
    try:
        yield build(target, Path(__file__).resolve().parents[2])
    finally:
        shutil.rmtree(target, ignore_errors=True)
