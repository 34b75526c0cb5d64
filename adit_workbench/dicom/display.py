"""Notebook display helpers: text and HTML that never outgrow one screen.

Every object a user meets in a notebook shows itself with a short text ``__repr__`` and
an HTML ``_repr_html_`` built here, within one budget: at most :data:`MAX_LINES` lines of
text and about :data:`MAX_HTML` characters of HTML. What does not fit is counted ("… 120
more"), never dropped silently, and the object says where the rest is (``.df``,
``str()``). Values are HTML-escaped here, so a patient name cannot inject markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

__all__ = ["MAX_HTML", "MAX_LINES", "cell", "html_fields", "html_table", "text_block"]

#: Lines of text one repr may take (a laptop screen of notebook output).
MAX_LINES = 40
#: Characters of HTML one repr may take.
MAX_HTML = 8000
_TABLE = "border-collapse:collapse;font-size:12px;text-align:left"
_MUTED = "color:#666"
_WARN = "color:#a94400;font-weight:bold"


def cell(value: Any, width: int = 64) -> str:
    """One value as short display text ("" for None, ISO dates, long text cut)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ", timespec="seconds")
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, tuple | list):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def text_block(
    title: str, lines: Iterable[str], *, more: str = "more", max_lines: int = MAX_LINES
) -> str:
    """``title`` and indented ``lines``, cut to ``max_lines`` with a count of the rest."""
    items = list(lines)
    room = min(max_lines, MAX_LINES) - 1
    if len(items) > room:
        hidden = len(items) - (room - 1)
        items = [*items[: room - 1], f"… {hidden} {more}"]
    return "\n".join([title, *(f"  {line}" for line in items)])


def html_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str = "",
    note: str = "",
    warn: bool = False,
    max_rows: int = 25,
    total: int | None = None,
) -> str:
    """An escaped HTML table under ``title``, at most ``max_rows`` rows and :data:`MAX_HTML`
    characters; ``total`` (the number of rows there are) makes the cut visible."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    parts: list[str] = []
    shown = 0
    size = len(head) + len(title) + len(note) + 400
    for row in rows:
        if shown >= max_rows:
            break
        line = "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row)
        if size + len(line) + 5 > MAX_HTML:
            break
        parts.append(line + "</tr>")
        size += len(line) + 5
        shown += 1
    out = ["<div>"]
    if title:
        out.append(f"<p style='{_WARN if warn else _MUTED}'>{html.escape(title)}</p>")
    if headers or parts:
        header = f"<tr>{head}</tr>" if head else ""
        out.append(f"<table style='{_TABLE}'>{header}{''.join(parts)}</table>")
    if total is not None and total > shown:
        out.append(f"<p style='{_MUTED}'>… {total - shown} more</p>")
    if note:
        out.append(f"<p style='{_MUTED}'>{html.escape(note)}</p>")
    out.append("</div>")
    return "".join(out)


def html_fields(title: str, fields: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of label and value (empty values left out)."""
    rows = [(label, value) for label, value in fields if cell(value)]
    return html_table((), rows, title=title, max_rows=MAX_LINES)
