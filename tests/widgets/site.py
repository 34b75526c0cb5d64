"""A small workbench site for the widget and dashboard tests.

A shared SQLite database (so that a second local user is not an admin), the sandbox PACS
started through ``wb.start_sandbox()`` on free ports, a folder destination OUT, the
current OS user as admin and a local user ``bob`` in group ``researchers`` who may only
search, explore, run selective transfers and batch queries (SANDBOX as source, OUT as
destination): no urgent, no unpseudonymized transfer, no staff.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import adit_workbench as aw
from adit_workbench.access import Access, Identity, IdentitySource, sign_in
from adit_workbench.config import get_settings
from adit_workbench.store import Database
from tests.servers._util import free_port

PATIENTS = 3  # x 2 studies (CT, MR) x 2 series x 3 instances
RESEARCHER = "bob"
RESEARCHER_PERMISSIONS = ("selective_transfer", "explorer", "batch_query")


@dataclass
class Site:
    """What the tests need: the environment for other processes, the admin's workbench."""

    root: Path
    env: dict[str, str]
    wb: aw.Workbench
    out: Path

    def as_user(self, name: str) -> aw.Workbench:
        """A workbench in this process acting for another (already signed-in) user."""
        return aw.Workbench(self.wb.settings, self.wb.database, Access(self.wb.database, name))


@contextmanager
def workbench_site(root: Path) -> Iterator[Site]:
    """Set the environment up (restored afterwards) and start the sandbox PACS."""
    env = {
        "ADIT_WB_DATA_DIR": str(root / "data"),
        "ADIT_WB_DATABASE_URL": f"sqlite:///{root / 'workbench.sqlite3'}",
        "ADIT_WB_SANDBOX_PORT": str(free_port()),
        "ADIT_WB_RECEIVER_PORT": str(free_port()),
        "ADIT_WB_SANDBOX_PATIENTS": str(PATIENTS),
    }
    saved = dict(os.environ)
    os.environ.update(env)
    for var in ("ADIT_WB_REDIS_URL", "ADIT_WB_SECRET_FILE", "JUPYTERHUB_USER"):
        os.environ.pop(var, None)
    get_settings.cache_clear()
    wb = None
    try:
        Database(env["ADIT_WB_DATABASE_URL"]).upgrade()
        wb = aw.connect()  # the first local user of a shared database becomes its admin
        wb.start_sandbox()
        out = root / "out"
        out.mkdir()
        wb.add_folder("OUT", out)
        sign_in(wb.database, Identity(RESEARCHER, IdentitySource.LOCAL), embedded=False)
        admin = wb.access.admin
        admin.set_members("researchers", [RESEARCHER])
        admin.grant("researchers", "SANDBOX", source=True)
        admin.grant("researchers", "OUT", destination=True)
        for permission in RESEARCHER_PERMISSIONS:
            admin.add_permission("researchers", permission)
        yield Site(root, env, wb, out)
    finally:
        if wb is not None:
            wb.stop_sandbox()
            wb.close()
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
