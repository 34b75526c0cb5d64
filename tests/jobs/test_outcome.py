"""The task outcome people read in ``job.tasks``: what a transfer delivered and skipped."""

from __future__ import annotations

from adit_workbench.jobs.execute import outcome_of
from adit_workbench.jobs.status import TaskStatus
from adit_workbench.transfer.result import TransferResult


def test_a_rerun_says_the_instances_were_already_there() -> None:
    outcome = outcome_of(TransferResult(expected=6, delivered=0, skipped=6))
    assert outcome.status is TaskStatus.SUCCESS
    assert outcome.message == "0 of 6 instance(s) delivered, 6 already there."
    assert "skipped=6" in outcome.log


def test_a_first_run_counts_what_it_delivered() -> None:
    outcome = outcome_of(TransferResult(expected=6, delivered=6))
    assert outcome.message == "6 of 6 instance(s) delivered."
