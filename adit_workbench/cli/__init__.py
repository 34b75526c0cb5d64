"""The ``adit-workbench`` command line.

Each command group lives in its own module and registers itself on :data:`app`; those
modules import only click at their top, and what a command needs inside it, so that
``--help`` and light commands start quickly (``bench/cli.py``).

:func:`main` turns every error into one line on stderr: exit code 2 for bad input
(usage errors, :class:`~adit_workbench.errors.InputError`), 1 for a failed operation
(any other error, including an unexpected one: its type and message, never a traceback
unless ``--verbose``), 130 when interrupted. Warnings and log records of libraries
(pydicom, pynetdicom, …) reach stderr only with ``--verbose``; the workbench's own
warnings (a refused file, say) always do.
"""

from __future__ import annotations

import logging
import sys
import warnings

import click

from ..errors import InputError, WorkbenchError
from . import _common

__all__ = ["app", "main"]


@click.group(name="adit-workbench", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adit-workbench")
@click.option(
    "--verbose", is_flag=True, help="Show library warnings and tracebacks (for bug reports)."
)
def app(verbose: bool) -> None:
    """Find, copy, pseudonymize and account for DICOM studies."""


# Command groups register themselves on `app` when imported.
from . import (  # noqa: E402,F401
    access,
    config_cmd,
    db,
    deid,
    hub,
    jobs,
    lab,
    nodes,
    query,
    sandbox,
    serve,
    transfer,
    upload,
)


class _OwnRecords(logging.Filter):
    """Without --verbose: only the workbench's own records (a library's error is the
    cause of one of ours, which says it in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("adit_workbench")


def _quiet_libraries(verbose: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("adit-workbench: %(message)s"))
    root = logging.getLogger()
    if verbose:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.INFO)
    else:
        handler.addFilter(_OwnRecords())
        root.setLevel(logging.WARNING)
        warnings.simplefilter("ignore")
    root.addHandler(handler)
    return handler


def _one_line(text: object) -> str:
    return " ".join(_common.clean(text).split())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings():
        handler = _quiet_libraries(verbose)
        try:
            return _run(args, verbose)
        finally:
            root.removeHandler(handler)
            root.setLevel(level)


def _run(args: list[str], verbose: bool) -> int:
    try:
        result = app.main(args=args, prog_name="adit-workbench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("adit-workbench: aborted", file=sys.stderr)
        code = 130
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "adit-workbench"
        print(f"{where}: {_one_line(exc.format_message())}", file=sys.stderr)
        code = 2
    except click.ClickException as exc:
        print(f"adit-workbench: {_one_line(exc.format_message())}", file=sys.stderr)
        code = exc.exit_code
    except InputError as exc:
        print(f"adit-workbench: {_common.clean(exc, keep_lines=True)}", file=sys.stderr)
        code = 2
    except WorkbenchError as exc:
        print(f"adit-workbench: {_common.clean(exc, keep_lines=True)}", file=sys.stderr)
        code = 1
    except Exception as exc:  # RecursionError, OverflowError, OSError …: one line, exit 1
        if verbose:
            import traceback

            traceback.print_exc()
        detail = _one_line(exc)[:300] or "(no message)"
        hint = "" if verbose else " (run with --verbose for details)"
        print(f"adit-workbench: failed: {type(exc).__name__}: {detail}{hint}", file=sys.stderr)
        code = 1
    else:
        code = result if isinstance(result, int) else 0
    finally:
        _common.reset()
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
