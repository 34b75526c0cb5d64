"""Fixtures for the access tests: a migrated database (SQLite and PostgreSQL) with users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adit_workbench.access import Access, Identity, IdentitySource, sign_in
from adit_workbench.dicom.spec import FolderSpec, ServerSpec
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store

HubUser = Callable[..., Access]


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A database at the head revision with nodes PACS, RESEARCH and ARCHIVE."""
    db = Database(database_url)
    db.upgrade()
    with db.session() as session:
        node_store.add_server(session, ServerSpec("PACS", "PACS", "127.0.0.1", 11112))
        node_store.add_server(session, ServerSpec("ARCHIVE", "ARCHIVE", "127.0.0.1", 11113))
        node_store.add_folder(session, FolderSpec("RESEARCH", Path("/tmp/research")))
    yield db
    db.dispose()


@pytest.fixture
def admin(database: Database) -> Access:
    """A local admin (the first local user of a shared database is bootstrapped as admin)."""
    return sign_in(database, Identity("boss", IdentitySource.SERVICE), embedded=False)


@pytest.fixture
def hub_user(database: Database, admin: Access) -> HubUser:
    """Sign in a hub user with the given groups (after the admin exists)."""

    def make(name: str, *groups: str, hub_admin: bool = False) -> Access:
        identity = Identity(name, IdentitySource.JUPYTERHUB, admin=hub_admin, groups=groups)
        return sign_in(database, identity, embedded=False)

    return make
