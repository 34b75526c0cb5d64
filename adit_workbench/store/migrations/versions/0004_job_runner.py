"""Job runner: a task's earliest start and its progress in bytes.

``not_before`` lets the local worker (which takes its queue from the database, not from
Redis) hold a retry or a task outside its time window until then; ``bytes_done`` and
``bytes_total`` give the progress bar a rate and an ETA in bytes, not only instances.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_task") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("bytes_done", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("bytes_total", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_task") as batch:
        batch.drop_column("bytes_total")
        batch.drop_column("bytes_done")
        batch.drop_column("not_before")
