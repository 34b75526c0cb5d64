"""Date shifting for the Retain Longitudinal Temporal Information, Modified Dates option.

A patient's dates move by a whole number of days, so times of day stay as they were and
intervals between any two of the patient's dates and datetimes are preserved. A value
that cannot be parsed is emptied rather than kept: it might still identify.
"""

from __future__ import annotations

from datetime import date, timedelta

__all__ = ["DUMMY_DATE", "DUMMY_DATETIME", "DUMMY_TIME", "shift_da", "shift_dt"]

DUMMY_DATE = "19000101"
DUMMY_TIME = "000000"
DUMMY_DATETIME = "19000101000000"


def _shift_date(text: str, days: int) -> str | None:
    """Shift ``YYYY[MM[DD]]`` keeping its precision; None if it is not a date."""
    if not text.isdigit() or len(text) not in (4, 6, 8):
        return None
    year = int(text[:4])
    month = int(text[4:6]) if len(text) >= 6 else 7
    day = int(text[6:8]) if len(text) == 8 else 1
    try:
        moved = date(year, month, day) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{moved:%Y%m%d}"[: len(text)]


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (``YYYYMMDD``, also the old ``YYYY.MM.DD``); '' if unparseable.

    Ranges (``A-B``, as in queries) shift both ends.
    """
    text = value.strip()
    if not text:
        return ""
    if "-" in text:
        parts = [shift_da(p, days) if p else "" for p in text.split("-", 1)]
        return "-".join(parts) if any(parts) else ""
    moved = _shift_date(text.replace(".", ""), days)
    return moved if moved is not None and len(moved) == 8 else ""


def shift_dt(value: str, days: int) -> str:
    """Shift one DT value (``YYYY[MM[DD[HH…]]][&ZZXX]``), keeping time and offset."""
    text = value.strip()
    if not text:
        return ""
    offset = ""
    for sign in ("+", "-"):
        if sign in text[4:]:
            cut = text.index(sign, 4)
            text, offset = text[:cut], text[cut:]
            break
    head, rest = text[:8], text[8:]
    digits = head if len(head) < 8 else head[:8]
    moved = _shift_date(digits, days)
    if moved is None:
        return ""
    return moved + rest + offset
