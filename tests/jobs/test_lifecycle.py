"""Job lifecycle details on both backends and databases: staff verification, time windows,
the archive password cleared at the end, the progress line, the accounting in the log."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from adit_workbench.access import Access, Permission
from adit_workbench.config import get_settings
from adit_workbench.errors import InputError, PermissionDenied
from adit_workbench.jobs import JobStatus, defaults
from adit_workbench.jobs.kinds import mass_transfer, selective_transfer
from adit_workbench.store.jobs import Job, Task

from .conftest import FakeTransfer, Harness


def test_unverified_jobs_wait_for_staff(
    harness: Harness,
    alice: Access,
    make_user: Callable[..., Access],
    fake_transfer: FakeTransfer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(defaults, "REQUIRE_VERIFICATION", True)
    job = selective_transfer(
        harness.manager(alice), ["1.2.3"], source="SANDBOX", destination="OUT", pseudonym="P"
    )
    harness.drain()
    assert job.status is JobStatus.UNVERIFIED and fake_transfer.calls == []
    with pytest.raises(PermissionDenied):
        harness.manager(alice).verify(job.id)
    staff = harness.manager(make_user("sam", Permission.STAFF))
    staff.verify(job.id)
    with pytest.raises(InputError, match="not UNVERIFIED"):
        staff.verify(job.id)
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS


def test_tasks_wait_for_their_time_window(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now()
    closed = f"{(now + timedelta(hours=2)):%H:00}-{(now + timedelta(hours=3)):%H:00}"
    monkeypatch.setenv("ADIT_WB_TIME_WINDOWS", json.dumps({"selective_transfer": closed}))
    get_settings.cache_clear()
    job = selective_transfer(
        harness.manager(alice), ["1.2.3"], source="SANDBOX", destination="OUT", pseudonym="P"
    )
    harness.drain()
    monkeypatch.delenv("ADIT_WB_TIME_WINDOWS")
    get_settings.cache_clear()
    [task] = job.tasks.to_dict("records")
    assert task["status"] == "PENDING" and task["attempts"] == 0
    assert "time window" in task["message"]
    assert fake_transfer.calls == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_archive_password_is_gone_when_the_job_ends(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer
) -> None:
    job = selective_transfer(
        harness.manager(alice), ["1.2.3"], source="SANDBOX", destination="OUT", pseudonym="P",
        archive_password="s3cret-pw",
    )  # fmt: skip
    harness.drain()
    job.wait(10, progress=False)
    with harness.database.session() as session:
        row = session.scalars(select(Job).where(Job.id == job.id)).one()
        assert row.archive_password is None and row.has_archive_password
    assert "s3cret-pw" not in repr(job) and "s3cret-pw" not in str(job.summary())
    jobs = harness.manager(alice)
    task_id = int(job.tasks["task"][0])
    with pytest.raises(InputError, match="give archive_password again"):
        jobs.reset_task(task_id)  # never an unprotected copy
    jobs.reset_task(task_id, archive_password="n3w-pw")
    harness.drain()
    assert job.wait(10, progress=False).status is JobStatus.SUCCESS
    assert len(fake_transfer.calls) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_wait_draws_a_plain_progress_line(
    harness: Harness,
    alice: Access,
    fake_transfer: FakeTransfer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)  # plain, as without tqdm
    job = selective_transfer(
        harness.manager(alice), ["1.2.3", "1.2.4"], source="SANDBOX", destination="OUT",
        pseudonym="P",
    )  # fmt: skip
    harness.drain()
    job.wait(10)
    err = capsys.readouterr().err
    assert f"job {job.id} [" in err and "SUCCESS: 2/2 instances (2/2 tasks)" in err
    # The last line stands on its own: what a saved notebook or a log keeps.
    assert err.splitlines()[-1].startswith(f"job {job.id} SUCCESS: 2/2 instances")
    assert "SUCCESS" in job._repr_html_()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_a_pipe_gets_lines_not_a_tqdm_bar(
    harness: Harness,
    alice: Access,
    fake_transfer: FakeTransfer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tqdm is installed, but stderr is a pipe (a script, CI log, `make demo | tee`)."""
    monkeypatch.delitem(__import__("sys").modules, "ipykernel", raising=False)
    job = selective_transfer(
        harness.manager(alice), ["1.2.3"], source="SANDBOX", destination="OUT", pseudonym="P"
    )
    harness.drain()
    job.wait(10)
    err = capsys.readouterr().err
    assert "\r" not in err and "0task" not in err and "it/s" not in err
    assert err.splitlines()[-1].startswith(f"job {job.id} SUCCESS: 1/1 instances")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_transfer_outcome_is_accounted_in_the_log(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer
) -> None:
    job = selective_transfer(
        harness.manager(alice), ["1.2.3"], source="SANDBOX", destination="OUT", pseudonym="P"
    )
    harness.drain()
    job.wait(10, progress=False)
    with harness.database.session() as session:
        [log] = session.scalars(select(Task.log).where(Task.job_id == job.id))
    assert log == "attempt 1: expected=1 delivered=1\n"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_mass_transfer_is_never_urgent_and_needs_dates_in_order(
    harness: Harness, make_user: Callable[..., Access]
) -> None:
    carol = harness.manager(make_user("carol", Permission.MASS_TRANSFER, Permission.URGENT))
    with pytest.raises(InputError, match="end is before start"):
        mass_transfer(carol, source="SANDBOX", destination="OUT", start="2021-02-01",
                      end="2021-01-01", filters=[{"modality": "CT"}])  # fmt: skip
    with pytest.raises(InputError, match="cannot be urgent"):
        mass_transfer(
            carol,
            source="SANDBOX",
            destination="OUT",
            start="2021-01-01",
            end="2021-01-01",
            filters=[{"modality": "CT"}],
            urgent=True,
        )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_pseudonym_map_is_for_authorized_users_only(
    harness: Harness, make_user: Callable[..., Access]
) -> None:
    dora = harness.manager(make_user("dora", Permission.MASS_TRANSFER))
    job = mass_transfer(
        dora, source="SANDBOX", destination="OUT", start="2021-01-01", end="2021-01-01",
        filters=[{"modality": "CT"}],
    )  # fmt: skip
    harness.drain()
    job.wait(30, progress=False, raise_on_failure=False)
    assert list(job.results.df.columns)[:2] == ["partition_key", "pseudonym"]
    assert "patient_id" not in job.results.df.columns
    with pytest.raises(PermissionDenied, match="transfer_unpseudonymized"):
        job.results.pseudonym_map("/tmp/never-written.csv")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_requeue_puts_waiting_tasks_back(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "REQUIRE_VERIFICATION", True)
    jobs = harness.manager(alice)
    job = selective_transfer(jobs, ["1.2.3"], source="SANDBOX", destination="OUT", pseudonym="P")
    with pytest.raises(InputError, match="nothing waits"):
        jobs.requeue(job.id)  # UNVERIFIED


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # logic, not the DB
def test_jobs_show_as_a_table_and_a_failed_job_says_why(
    harness: Harness, alice: Access, fake_transfer: FakeTransfer
) -> None:
    from adit_workbench.errors import TransferError

    jobs = harness.manager(alice)
    assert "No jobs" in jobs._repr_html_() and "0 job(s)" in repr(jobs)
    fake_transfer.fail["1.2.4"] = TransferError("destination refused 2 instances")
    good = selective_transfer(jobs, ["1.2.3"], source="SANDBOX", destination="OUT", pseudonym="P")
    bad = selective_transfer(jobs, ["1.2.4"], source="SANDBOX", destination="OUT", pseudonym="P")
    harness.drain()
    bad.wait(10, progress=False, raise_on_failure=False)
    table = jobs._repr_html_()
    assert table.startswith("<table") and table.count("<tr>") == 3
    text = repr(jobs).splitlines()
    assert "2 job(s)" in text[0] and len(text) == 3
    assert text[1].split()[:3] == [str(bad.id), "selective_transfer", "FAILURE"]
    assert text[2].split()[:3] == [str(good.id), "selective_transfer", "SUCCESS"]
    html = bad._repr_html_()
    assert "red" in html and "destination refused 2 instances" in html
    for shown in (html, repr(bad), good._repr_html_(), repr(good)):
        assert 0 < len(shown) < 3000 and shown.count("\n") < 25
