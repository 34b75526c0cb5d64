"""Site-wide state: maintenance mode and the announcement shown to every user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["SiteStatus", "read_site_status", "write_site_status"]


@dataclass(frozen=True)
class SiteStatus:
    """Maintenance flag and announcement, with who set them and when."""

    maintenance: bool = False
    announcement: str = ""
    updated_at: datetime | None = None
    updated_by: str = ""


def read_site_status(session: Session) -> SiteStatus:
    """The current site status (defaults when no admin ever set one)."""
    # The store on first use: the remote client builds SiteStatus without SQLAlchemy.
    from ..store.access import SiteSettings

    row = session.get(SiteSettings, 1)
    if row is None:
        return SiteStatus()
    return SiteStatus(row.maintenance, row.announcement, row.updated_at, row.updated_by)


def write_site_status(
    session: Session, *, maintenance: bool, announcement: str, by: str
) -> SiteStatus:
    """Store a new site status (callers check the admin permission and audit)."""
    from ..store.access import SiteSettings
    from ..store.models import utcnow

    row = session.get(SiteSettings, 1)
    if row is None:
        row = SiteSettings(id=1)
        session.add(row)
    row.maintenance = maintenance
    row.announcement = announcement
    row.updated_at = utcnow()
    row.updated_by = by
    session.flush()
    return SiteStatus(row.maintenance, row.announcement, row.updated_at, row.updated_by)
