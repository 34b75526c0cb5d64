"""A user's kernel as the remote client of the real service: a search never loads
SQLAlchemy or the store, and pandas only arrives with the first ``.df``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.web.conftest import People, Running

REPO = Path(__file__).resolve().parents[2]

KERNEL = """
import json, sys
import adit_workbench as aw

def loaded(*names):
    below = tuple(n + "." for n in names)
    return sorted(m for m in sys.modules if m in names or m.startswith(below))

wb = aw.connect()
hits = wb.node("SANDBOX").find_studies(patient_id="SYN0001")
series = hits[0].series()
before = loaded("pandas", "sqlalchemy", "adit_workbench.store")
frame = hits.df
after = loaded("pandas", "sqlalchemy", "adit_workbench.store")
print(json.dumps({"type": type(wb).__name__, "studies": len(hits), "series": len(series),
                  "rows": len(frame), "before": before, "after": after}))
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_search_through_the_service_without_store_and_pandas_on_first_df(
    service: Running, people: People, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADIT_WB_", "JUPYTERHUB_"))}
    env.update(
        ADIT_WB_SERVICE_URL=service.url,
        ADIT_WB_API_TOKEN=people.token("alice"),
        ADIT_WB_DATA_DIR=str(tmp_path / "client-data"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "-c", KERNEL], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["type"] == "RemoteWorkbench"
    assert found["studies"] == found["rows"] == 2 and found["series"] > 0
    assert found["before"] == []  # searched and navigated: no pandas, no SQLAlchemy, no store
    assert "pandas" in found["after"]
    assert not [m for m in found["after"] if not m.startswith("pandas")]
