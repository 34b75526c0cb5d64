"""Seal the DICOMweb ``Authorization`` headers of stored servers.

They were kept in clear text, readable by every backup, replica and staff SQL session.
From now on :mod:`adit_workbench.store.nodes` stores them sealed under a key derived from
the master secret (:mod:`adit_workbench.store.sealed`); this seals those already stored.
It runs where the migration runs (``adit-workbench db upgrade`` on the service's host),
with that host's master secret, and reads it only when there is something to seal.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import context, op

if TYPE_CHECKING:
    from adit_workbench.config import Settings

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_servers = sa.table(
    "dicom_server", sa.column("id", sa.Integer), sa.column("dicomweb_authorization", sa.Text)
)


def _rewrite(change: Callable[[str], str | None]) -> None:
    if context.is_offline_mode():  # reviewed SQL: the secret is not there to seal with
        op.execute("-- 0006 seals stored DICOMweb credentials: run it online (db upgrade)")
        return
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_servers.c.id, _servers.c.dicomweb_authorization).where(
            _servers.c.dicomweb_authorization.is_not(None)
        )
    ).all()
    for row_id, stored in rows:
        new = change(stored)
        if new != stored:
            bind.execute(
                _servers.update().where(_servers.c.id == row_id).values(dicomweb_authorization=new)
            )


def _settings() -> Settings:
    """This host's settings, if they name an existing master secret: sealing under a
    secret made up here would lock the service out of every stored credential."""
    from adit_workbench.config import get_settings
    from adit_workbench.errors import ConfigurationError

    settings = get_settings()
    if not settings.secret_path.exists():
        raise ConfigurationError(
            "migration 0006 seals stored DICOMweb credentials with the master secret: run "
            "'adit-workbench db upgrade' where ADIT_WB_SECRET_FILE names the service's secret"
        )
    return settings


def upgrade() -> None:
    from adit_workbench.store.sealed import NODE_CREDENTIAL, is_sealed, seal

    _rewrite(lambda v: v if is_sealed(v) else seal(_settings(), v, NODE_CREDENTIAL))


def downgrade() -> None:
    from adit_workbench.store.sealed import NODE_CREDENTIAL, is_sealed, unseal

    _rewrite(lambda v: unseal(_settings(), v, NODE_CREDENTIAL) if is_sealed(v) else v)
