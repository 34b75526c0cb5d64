"""Task modalities: the instances a transfer task delivered, per modality.

The jobs dashboard charts instances per modality; a selective or batch transfer task
recorded only its instance count, so its modalities were lost once it ended. A JSON
mapping (``{"CT": 120, "MR": 30}``), nullable: tasks of older versions and of other
kinds have none.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_task") as batch:
        batch.add_column(sa.Column("modalities", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_task") as batch:
        batch.drop_column("modalities")
