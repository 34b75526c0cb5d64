"""Mass transfer pieces: partitions, filter validation, and the recursive time-window split
that answers a PACS result cap, plus time windows for job kinds and nodes."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest

from adit_workbench.errors import InputError
from adit_workbench.jobs import mass
from adit_workbench.jobs.schedule import parse_window, seconds_until_open

DAY = date(2021, 6, 7)


def test_partitions_daily_and_weekly() -> None:
    assert [k for *_, k in mass.partitions(DAY, date(2021, 6, 9), "daily")] == [
        "20210607", "20210608", "20210609",
    ]  # fmt: skip
    weekly = mass.partitions(DAY, date(2021, 6, 16), "weekly")
    assert [k for *_, k in weekly] == ["20210607-20210613", "20210614-20210616"]
    with pytest.raises(InputError, match="daily or weekly"):
        mass.partitions(DAY, DAY, "hourly")


@pytest.mark.parametrize(
    ("filters", "fragment"),
    [
        ([], "at least one include"),
        ([{"mode": "exclude", "modality": "SR"}], "at least one include"),
        ([{"modality": "CT", "colour": "red"}], "unknown keys ['colour']"),
        ([{"mode": "maybe"}], "include or exclude"),
        ([{"min_age": -1}], "min_age is a non-negative integer"),
        ([{"series_number": "x"}], "series_number is an integer"),
        ("[{", "invalid JSON"),
        (42, "a list of objects"),
    ],
)
def test_bad_filters_are_refused(filters: Any, fragment: str) -> None:
    with pytest.raises(InputError, match=re.escape(fragment)):
        mass.parse_filters(filters)


def test_filters_from_a_json_file(tmp_path: Any) -> None:
    path = tmp_path / "filters.json"
    path.write_text('[{"modality": "CT", "min_age": 18}, {"mode": "exclude", "modality": "SR"}]')
    parsed = mass.parse_filters(str(path))
    assert [f["mode"] for f in parsed] == ["include", "exclude"]


@dataclass
class _Found:
    items: list[Any]
    truncated: bool

    def __iter__(self) -> Any:
        return iter(self.items)


@dataclass
class _Ctx:
    notes: list[str]
    cancel_event: threading.Event

    def check_cancel(self) -> None:
        pass


def test_capped_windows_are_split_until_every_study_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    times = ["010000", "011000", "090000", "233000"]  # two only ten minutes apart
    asked: list[str | None] = []

    def fake_find_studies(source: Any, *, study_date: Any, study_time: Any = None, **_: Any) -> Any:
        asked.append(study_time)
        if study_time is None:
            inside = times
        else:
            lo, hi = study_time.split("-")
            inside = [t for t in times if lo <= t <= hi]
        return _Found(inside[:1], truncated=len(inside) > 1)  # a result cap of 1

    monkeypatch.setattr("adit_workbench.dicom.query.find_studies", fake_find_studies)
    ctx = _Ctx([], threading.Event())
    found = list(mass._windowed_studies(ctx, None, DAY, 0, 24 * 60, {}))  # type: ignore[arg-type]
    assert sorted(found) == times
    assert ctx.notes == []
    assert len(asked) > 5  # it had to split


def test_a_window_at_the_minimum_is_reported_not_silently_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    times = ["010000", "010500"]  # five minutes apart: below the 30-minute minimum

    def fake_find_studies(source: Any, *, study_date: Any, study_time: Any = None, **_: Any) -> Any:
        lo, hi = (study_time or "000000-235959").split("-")
        inside = [t for t in times if lo <= t <= hi]
        return _Found(inside[:1], truncated=len(inside) > 1)

    monkeypatch.setattr("adit_workbench.dicom.query.find_studies", fake_find_studies)
    ctx = _Ctx([], threading.Event())
    list(mass._windowed_studies(ctx, None, DAY, 0, 24 * 60, {}))  # type: ignore[arg-type]
    assert ctx.notes and "some may be missing" in ctx.notes[0]


def test_time_windows() -> None:
    assert parse_window("18:00-07:00")[0].hour == 18
    with pytest.raises(InputError):
        parse_window("25:00-07:00")
    windows = {"mass_transfer": "18:00-07:00", "PACS": "20:00-06:00"}
    night, noon = datetime(2026, 1, 1, 22, 0), datetime(2026, 1, 1, 12, 0)
    assert seconds_until_open("mass_transfer", windows=windows, now=night) == 0
    assert seconds_until_open("mass_transfer", windows=windows, now=noon) == 6 * 3600
    assert seconds_until_open("batch_query", windows=windows, now=noon) == 0
    assert seconds_until_open("batch_query", ["PACS"], windows=windows, now=noon) == 8 * 3600
    assert seconds_until_open("mass_transfer", ["PACS"], windows=windows, now=night) == 0
