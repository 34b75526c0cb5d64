"""Alembic migrations of the workbench schema, run by :meth:`Database.upgrade`."""
