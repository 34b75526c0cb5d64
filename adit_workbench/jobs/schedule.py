"""Time windows: when tasks of a job kind, or tasks touching a node, may run.

A window is ``"HH:MM-HH:MM"`` in local time; one that ends before it starts spans
midnight (``"18:00-07:00"``: mass transfers at night). Windows come from the setting
``time_windows`` (ADIT_WB_TIME_WINDOWS), keyed by job kind value or by node name; a task
runs only when every window that applies to it is open. ADIT had such slots and dropped them
in 2023; its users still ask for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from datetime import time as dtime

from ..config import get_settings
from ..errors import InputError

__all__ = ["parse_window", "seconds_until_open"]

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_window(text: str) -> tuple[dtime, dtime]:
    """``"18:00-07:00"`` → (18:00, 07:00); raises InputError on another shape."""
    m = _WINDOW.match(text)
    if not m or int(m[1]) > 23 or int(m[3]) > 23 or int(m[2]) > 59 or int(m[4]) > 59:
        raise InputError(f"time window {text!r}: expected HH:MM-HH:MM")
    return dtime(int(m[1]), int(m[2])), dtime(int(m[3]), int(m[4]))


def _wait(window: str, now: datetime) -> float:
    start, end = parse_window(window)
    t = now.time()
    inside = start <= t < end if start < end else (t >= start or t < end)
    if start == end or inside:
        return 0.0
    opens = now.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if opens <= now:
        opens += timedelta(days=1)
    return (opens - now).total_seconds()


def seconds_until_open(
    kind: str,
    nodes: Iterable[str | None] = (),
    *,
    windows: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> float:
    """Seconds until every window for ``kind`` and ``nodes`` is open (0: run now)."""
    table = get_settings().time_windows if windows is None else windows
    if not table:
        return 0.0
    now = now or datetime.now()
    keys = [str(kind), *(n for n in nodes if n)]
    waits = [_wait(table[k], now) for k in keys if k in table]
    if not waits or max(waits) == 0:
        return 0.0
    # Two windows that do not overlap right now: check again when the later one opens.
    return max(waits)
