"""Nodes: one name space (``node``) with server and folder details in child tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _flag(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('server', 'folder')", name=op.f("ck_node_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node")),
        sa.UniqueConstraint("name", name=op.f("uq_node_name")),
    )
    op.create_table(
        "dicom_server",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        _flag("echo"),
        _flag("patient_root_find"),
        _flag("study_root_find"),
        _flag("patient_root_get"),
        _flag("study_root_get"),
        _flag("patient_root_move"),
        _flag("study_root_move"),
        _flag("store"),
        _flag("qido"),
        _flag("wado"),
        _flag("stow"),
        sa.Column("dicomweb_root_url", sa.String(length=2048), nullable=True),
        sa.Column("dicomweb_qido_prefix", sa.String(length=255), nullable=False),
        sa.Column("dicomweb_wado_prefix", sa.String(length=255), nullable=False),
        sa.Column("dicomweb_stow_prefix", sa.String(length=255), nullable=False),
        sa.Column("dicomweb_authorization", sa.Text(), nullable=True),
        sa.Column("max_search_results", sa.Integer(), nullable=False),
        sa.Column("max_associations", sa.Integer(), nullable=False),
        sa.Column("probed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_details", sa.JSON(), nullable=False),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name=op.f("ck_dicom_server_port_range")),
        sa.CheckConstraint(
            "max_search_results >= 1", name=op.f("ck_dicom_server_max_search_results_positive")
        ),
        sa.CheckConstraint(
            "max_associations >= 1", name=op.f("ck_dicom_server_max_associations_positive")
        ),
        sa.ForeignKeyConstraint(
            ["id"], ["node.id"], name=op.f("fk_dicom_server_id_node"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_server")),
    )
    op.create_table(
        "dicom_folder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("quota_gb", sa.Float(), nullable=True),
        sa.Column("warn_size_gb", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "quota_gb IS NULL OR quota_gb >= 0", name=op.f("ck_dicom_folder_quota_gb_nonnegative")
        ),
        sa.CheckConstraint(
            "warn_size_gb IS NULL OR warn_size_gb >= 0",
            name=op.f("ck_dicom_folder_warn_size_gb_nonnegative"),
        ),
        sa.ForeignKeyConstraint(
            ["id"], ["node.id"], name=op.f("fk_dicom_folder_id_node"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_folder")),
    )


def downgrade() -> None:
    op.drop_table("dicom_folder")
    op.drop_table("dicom_server")
    op.drop_table("node")
