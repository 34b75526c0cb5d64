"""The ``adit-workbench`` command line.

Each command group lives in its own module and registers itself on :data:`app`.
:func:`main` turns every error into one line on stderr: exit code 2 for bad input
(usage errors, :class:`~adit_workbench.errors.InputError`), 1 for a failed operation.
"""

from __future__ import annotations

import sys

import click

from ..errors import InputError, WorkbenchError
from . import _common

__all__ = ["app", "main"]


@click.group(name="adit-workbench", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="adit-workbench")
def app() -> None:
    """Find, copy, pseudonymize and account for DICOM studies."""


# Command groups register themselves on `app` when imported.
from . import access, config_cmd, db, deid, jobs, lab, nodes, query, sandbox, transfer  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    try:
        result = app.main(args=argv, prog_name="adit-workbench", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        print("adit-workbench: aborted", file=sys.stderr)
        code = 1
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "adit-workbench"
        print(f"{where}: {exc.format_message()}", file=sys.stderr)
        code = 2
    except click.ClickException as exc:
        print(f"adit-workbench: {exc.format_message()}", file=sys.stderr)
        code = exc.exit_code
    except InputError as exc:
        print(f"adit-workbench: {exc}", file=sys.stderr)
        code = 2
    except WorkbenchError as exc:
        print(f"adit-workbench: {exc}", file=sys.stderr)
        code = 1
    else:
        code = result if isinstance(result, int) else 0
    finally:
        _common.reset()
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
