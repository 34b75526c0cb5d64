"""Persistence: SQLAlchemy 2 models, sessions and Alembic migrations.

One schema for the embedded SQLite file and for a shared PostgreSQL server::

    db = open_database(get_settings())          # embedded SQLite is upgraded automatically
    with db.session() as session:
        nodes.add_server(session, ServerSpec("PACS", "PACS", "pacs.example.org", 104))
        nodes.list_nodes(session)
"""

from __future__ import annotations

from . import access as access_models  # noqa: F401 (registers the tables with Base)
from . import jobs as job_models  # noqa: F401 (registers the tables with Base)
from . import nodes
from .database import Database, open_database
from .models import Base

__all__ = ["Base", "Database", "nodes", "open_database"]
