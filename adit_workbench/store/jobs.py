"""Models of the jobs layer: jobs, their tasks, batch-query results, mass-transfer series.

Only rows live here; the rules (status machine, claiming, batch files) are in
:mod:`adit_workbench.jobs`.

* ``job``: one request of one owner (selective transfer, batch query, batch transfer,
  mass transfer) with its options. Users and nodes are named by value, like the audit
  log: a job keeps its history when a user or node is removed, and the worker re-checks
  access by name when a task starts, so a removed node fails the task with a clear reason.
* ``job_task``: one unit of work (a study to transfer, a query row, a mass-transfer
  partition), claimed by one worker at a time; ``heartbeat`` tells the sweeper it lives.
* ``batch_query_result``: one study (or series) found by a batch-query task.
* ``mass_transfer_volume``: one series discovered by a mass-transfer partition, with its
  own status, so that a dead series does not hide the hundred that were delivered.

Status columns hold the values of :class:`adit_workbench.jobs.status.JobStatus` /
``TaskStatus`` as text (no CHECK constraint: a new status needs no migration).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .models import NAME_LENGTH, Base, utcnow

__all__ = ["BatchQueryResult", "Job", "MassTransferVolume", "Task"]

PRINCIPAL_LENGTH = 255
STATUS_LENGTH = 16
LO_LENGTH = 64
UID_LENGTH = 64


class Job(Base):
    """One job of one owner; its status is derived from its tasks."""

    __tablename__ = "job"
    __table_args__: tuple[Any, ...] = (Index("ix_job_owner_status", "owner", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(PRINCIPAL_LENGTH))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH), index=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    destination: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    project_name: Mapped[str] = mapped_column(String(150), default="")
    project_description: Mapped[str] = mapped_column(Text, default="")
    ethics_approval_id: Mapped[str] = mapped_column(String(100), default="")
    trial_protocol_id: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    trial_protocol_name: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    pseudonymize: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Pseudonymization options by name (e.g. ``["RETAIN_LONG_MODIFIED_DATES"]``).
    deid_options: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Cleared when the job ends: the password is needed only while tasks write archives.
    archive_password: Mapped[str | None] = mapped_column(Text)
    has_archive_password: Mapped[bool] = mapped_column(Boolean, default=False)
    convert_to_nifti: Mapped[bool] = mapped_column(Boolean, default=False)
    send_finished_mail: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Kind-specific parameters (mass transfer: dates, granularity, filters).
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    started: Mapped[datetime | None] = mapped_column()
    ended: Mapped[datetime | None] = mapped_column()
    mail_sent: Mapped[bool] = mapped_column(Boolean, default=False)

    tasks: Mapped[list[Task]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True, order_by="Task.id"
    )

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status}>"


class Task(Base):
    """One unit of work of a job, run by one worker at a time."""

    __tablename__ = "job_task"
    __table_args__: tuple[Any, ...] = (
        Index("ix_job_task_status_heartbeat", "status", "heartbeat"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    source: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    destination: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    patient_id: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    study_uid: Mapped[str] = mapped_column(String(UID_LENGTH), default="")
    series_uids: Mapped[list[str]] = mapped_column(JSON, default=list)
    pseudonym: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    #: Line numbers of the batch file this task came from.
    lines: Mapped[list[int]] = mapped_column(JSON, default=list)
    #: Kind-specific input (batch-query filters, a mass-transfer partition).
    query: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    log: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(PRINCIPAL_LENGTH))
    heartbeat: Mapped[datetime | None] = mapped_column()
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    #: Bytes delivered so far and expected (None when the source does not say).
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    #: Instances delivered per modality (``{"CT": 120, "MR": 30}``); None until a
    #: transfer task ends, and for tasks of other kinds or older versions.
    modalities: Mapped[dict[str, int] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    #: The local worker leaves a PENDING task alone until then (a retry's pause, a
    #: time window); the RQ backend holds delays in Redis instead.
    not_before: Mapped[datetime | None] = mapped_column()
    queued: Mapped[datetime | None] = mapped_column()
    started: Mapped[datetime | None] = mapped_column()
    ended: Mapped[datetime | None] = mapped_column()

    job: Mapped[Job] = relationship(back_populates="tasks")

    def __repr__(self) -> str:
        return f"<Task {self.id} of job {self.job_id} {self.status}>"


class BatchQueryResult(Base):
    """A study (or series) that a batch-query task found."""

    __tablename__ = "batch_query_result"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("job_task.id", ondelete="CASCADE"), index=True)
    patient_id: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    accession_number: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    study_time: Mapped[str] = mapped_column(String(16), default="")
    modalities: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    image_count: Mapped[int | None] = mapped_column(Integer)
    study_description: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    series_description: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    series_number: Mapped[str] = mapped_column(String(16), default="")
    pseudonym: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    study_uid: Mapped[str] = mapped_column(String(UID_LENGTH), default="")
    series_uid: Mapped[str] = mapped_column(String(UID_LENGTH), default="")

    def __repr__(self) -> str:  # no identifying values
        return f"<BatchQueryResult {self.id} of task {self.task_id}>"


class MassTransferVolume(Base):
    """One series found by a mass-transfer partition, with its own outcome."""

    __tablename__ = "mass_transfer_volume"
    __table_args__: tuple[Any, ...] = (
        UniqueConstraint("job_id", "series_uid", name="uq_mass_transfer_volume_job_id_series"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("job_task.id", ondelete="CASCADE"), index=True)
    partition_key: Mapped[str] = mapped_column(String(32))
    pseudonym: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    patient_id: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    accession_number: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    study_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    study_uid_pseudonymized: Mapped[str] = mapped_column(String(UID_LENGTH), default="")
    series_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    series_uid_pseudonymized: Mapped[str] = mapped_column(String(UID_LENGTH), default="")
    modality: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    series_description: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    series_number: Mapped[str] = mapped_column(String(16), default="")
    study_datetime: Mapped[str] = mapped_column(String(32), default="")
    institution_name: Mapped[str] = mapped_column(String(LO_LENGTH), default="")
    number_of_images: Mapped[int | None] = mapped_column(Integer)
    #: pending, exported, skipped or error.
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH), default="pending")
    log: Mapped[str] = mapped_column(Text, default="")

    def __repr__(self) -> str:  # no identifying values
        return f"<MassTransferVolume {self.id} of job {self.job_id} {self.status}>"
