"""Cells of tables the workbench writes for spreadsheets (CSV exports of jobs and audit).

A value that reached the database from a PACS or a user (a StudyDescription, a user
name) may start like a spreadsheet formula; ``=HYPERLINK(…)`` would then run when an
admin opens the export. Every CSV writer of the package passes its cells through
:func:`neutralize`. It lives at the top of the layer table so that the access layer
(audit export) and the jobs layer (result exports) share it.
"""

from __future__ import annotations

__all__ = ["FORMULA_START", "neutralize"]

#: First characters a spreadsheet reads as the start of a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a ``'``
    in front (``=HYPERLINK(…)`` from a crafted StudyDescription is then inert)."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell
