"""How a transfer cuts its work into fetch streams."""

from __future__ import annotations

from adit_workbench.transfer.plan import SeriesPlan, TransferPlan, mark_whole, streams_for


def _plan(*sizes: int) -> TransferPlan:
    series = [
        SeriesPlan(f"1.2.{i}", "CT", n, instances=[f"1.2.{i}.{k}" for k in range(n)])
        for i, n in enumerate(sizes)
    ]
    return TransferPlan("1.2", series)


def test_whole_series_are_one_stream_each() -> None:
    plan = _plan(40, 30, 20)
    mark_whole(plan)
    for method in ("cget", "wado"):
        streams = streams_for(plan, method, 2)
        assert [(s.series, s.sops) for s in streams] == [
            ("1.2.0", ()),
            ("1.2.1", ()),
            ("1.2.2", ()),
        ]


def test_cget_splits_a_lone_series_for_every_core_wado_does_not() -> None:
    plan = _plan(100)
    mark_whole(plan)
    cget = streams_for(plan, "cget", 2)
    assert [len(s.sops) for s in cget] == [50, 50]
    assert {sop for s in cget for sop in s.sops} == set(plan.series[0].instances or ())
    # WADO-RS: one request for the series, not a request per instance.
    assert [(s.series, s.sops) for s in streams_for(plan, "wado", 2)] == [("1.2.0", ())]


def test_what_is_left_of_a_series_goes_by_instance() -> None:
    plan = _plan(600)
    plan.series[0].todo = (plan.series[0].instances or [])[:300]
    streams = streams_for(plan, "wado", 1)
    assert [len(s.sops) for s in streams] == [256, 44]  # bounded URL lists
