"""Databases for the store tests: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adit_workbench.store import Database


@pytest.fixture
def empty_database(database_url: str) -> Iterator[Database]:
    """A database with no schema yet."""
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def database(empty_database: Database) -> Database:
    """A database upgraded to the head revision."""
    empty_database.upgrade()
    return empty_database
