"""Jobs: jobs, their tasks, batch-query results and mass-transfer series.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("destination", sa.String(length=64), nullable=True),
        sa.Column("project_name", sa.String(length=150), nullable=False),
        sa.Column("project_description", sa.Text(), nullable=False),
        sa.Column("ethics_approval_id", sa.String(length=100), nullable=False),
        sa.Column("trial_protocol_id", sa.String(length=64), nullable=False),
        sa.Column("trial_protocol_name", sa.String(length=64), nullable=False),
        sa.Column("pseudonymize", sa.Boolean(), nullable=False),
        sa.Column("deid_options", sa.JSON(), nullable=False),
        sa.Column("archive_password", sa.Text(), nullable=True),
        sa.Column("has_archive_password", sa.Boolean(), nullable=False),
        sa.Column("convert_to_nifti", sa.Boolean(), nullable=False),
        sa.Column("send_finished_mail", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mail_sent", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
    )
    op.create_index("ix_job_owner_status", "job", ["owner", "status"], unique=False)
    op.create_index(op.f("ix_job_status"), "job", ["status"], unique=False)
    op.create_table(
        "job_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("destination", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uids", sa.JSON(), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("heartbeat", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_task_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_task")),
    )
    op.create_index(op.f("ix_job_task_job_id"), "job_task", ["job_id"], unique=False)
    op.create_index(
        "ix_job_task_status_heartbeat", "job_task", ["status", "heartbeat"], unique=False
    )
    op.create_table(
        "batch_query_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=324), nullable=False),
        sa.Column("patient_birth_date", sa.String(length=8), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("study_date", sa.String(length=8), nullable=False),
        sa.Column("study_time", sa.String(length=16), nullable=False),
        sa.Column("modalities", sa.String(length=64), nullable=False),
        sa.Column("image_count", sa.Integer(), nullable=True),
        sa.Column("study_description", sa.String(length=64), nullable=False),
        sa.Column("series_description", sa.String(length=64), nullable=False),
        sa.Column("series_number", sa.String(length=16), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
            name=op.f("fk_batch_query_result_job_id_job"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["job_task.id"],
            name=op.f("fk_batch_query_result_task_id_job_task"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_query_result")),
    )
    op.create_index(
        op.f("ix_batch_query_result_job_id"), "batch_query_result", ["job_id"], unique=False
    )
    op.create_index(
        op.f("ix_batch_query_result_task_id"), "batch_query_result", ["task_id"], unique=False
    )
    op.create_table(
        "mass_transfer_volume",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("partition_key", sa.String(length=32), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid_pseudonymized", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid_pseudonymized", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("study_description", sa.String(length=64), nullable=False),
        sa.Column("series_description", sa.String(length=64), nullable=False),
        sa.Column("series_number", sa.String(length=16), nullable=False),
        sa.Column("study_datetime", sa.String(length=32), nullable=False),
        sa.Column("institution_name", sa.String(length=64), nullable=False),
        sa.Column("number_of_images", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
            name=op.f("fk_mass_transfer_volume_job_id_job"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["job_task.id"],
            name=op.f("fk_mass_transfer_volume_task_id_job_task"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mass_transfer_volume")),
        sa.UniqueConstraint("job_id", "series_uid", name="uq_mass_transfer_volume_job_id_series"),
    )
    op.create_index(
        op.f("ix_mass_transfer_volume_job_id"), "mass_transfer_volume", ["job_id"], unique=False
    )
    op.create_index(
        op.f("ix_mass_transfer_volume_task_id"), "mass_transfer_volume", ["task_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("mass_transfer_volume")
    op.drop_table("batch_query_result")
    op.drop_table("job_task")
    op.drop_table("job")
