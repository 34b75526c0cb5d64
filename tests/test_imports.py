"""Import cost: the remote client (a user's kernel, every Voilà dashboard) loads neither
SQLAlchemy nor the store, and pandas only when a ``.df`` is asked for; every name a lazy
package advertises resolves, and its ``TYPE_CHECKING`` imports (what mypy and editors see)
name the same things as its ``__all__``."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Packages whose ``__init__`` imports on first use (PEP 562).
LAZY_PACKAGES = [
    "adit_workbench",
    "adit_workbench.access",
    "adit_workbench.jobs",
    "adit_workbench.remote",
    "adit_workbench.widgets",
]

#: What a remote client must not load: the embedded backend and the heavy optional parts.
NOT_ON_REMOTE_PATH = ("sqlalchemy", "adit_workbench.store", "pandas", "matplotlib", "ipywidgets")


def _modules_after(code: str, tmp_path: Path, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh Python; it prints a JSON object, which is returned."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ADIT_WB_", "JUPYTERHUB_"))}
    environ["ADIT_WB_DATA_DIR"] = str(tmp_path / "client-data")
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _loaded(modules: object, prefixes: tuple[str, ...]) -> list[str]:
    assert isinstance(modules, list)
    below = tuple(p + "." for p in prefixes)
    return sorted(m for m in modules if m in prefixes or m.startswith(below))


def test_remote_client_loads_no_store_nor_sqlalchemy(tmp_path: Path) -> None:
    code = """
import json, sys
import adit_workbench as aw
wb = aw.connect()
import adit_workbench.widgets
from adit_workbench.remote import RemoteWorkbench, RemoteNode, RemoteJobHandle
from adit_workbench.jobs import JobFailed, JobStatus
from adit_workbench.access import Permission, UserProfile, SiteStatus
from adit_workbench.jobs.upload import iter_folder  # the remote upload reads folders too
print(json.dumps({"type": type(wb).__name__, "modules": sorted(sys.modules)}))
"""
    found = _modules_after(
        code,
        tmp_path,
        ADIT_WB_SERVICE_URL="http://127.0.0.1:9/",  # never contacted: connect() only sets up
        ADIT_WB_API_TOKEN="not-a-real-token",
    )
    assert found["type"] == "RemoteWorkbench"
    assert _loaded(found["modules"], NOT_ON_REMOTE_PATH) == []
    assert not (tmp_path / "client-data").exists()


def test_plain_import_loads_nothing_heavy(tmp_path: Path) -> None:
    code = """
import json, sys
import adit_workbench, adit_workbench.jobs, adit_workbench.access, adit_workbench.remote
import adit_workbench.widgets
print(json.dumps({"modules": sorted(sys.modules)}))
"""
    found = _modules_after(code, tmp_path)
    heavy = (*NOT_ON_REMOTE_PATH, "pydicom", "pydantic", "requests")
    assert _loaded(found["modules"], heavy) == []


def test_widget_modules_load_no_backend(tmp_path: Path) -> None:
    """What a dashboard's first cell imports before its widget shows: ipywidgets, not
    the store, pandas, pydicom or matplotlib (those come with the first search or chart)."""
    code = """
import json, sys
from adit_workbench import widgets
for name in widgets.__all__:
    getattr(widgets, name)
print(json.dumps({"modules": sorted(sys.modules)}))
"""
    found = _modules_after(code, tmp_path)
    heavy = ("sqlalchemy", "adit_workbench.store", "pandas", "pydicom", "matplotlib")
    assert _loaded(found["modules"], heavy) == []
    assert _loaded(found["modules"], ("ipywidgets",))


def _type_checking_names(module: ModuleType) -> set[str]:
    """Names bound by the ``if TYPE_CHECKING:`` imports of a package's ``__init__``."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in statement.names)
    return names


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_advertised_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, f"{package}.{name}"
        if hasattr(value, "__module__") and not isinstance(value, str):
            home = importlib.import_module(value.__module__)
            assert getattr(home, getattr(value, "__name__", name), value) is value
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


def test_widgets_offered_to_completion_before_import() -> None:
    import adit_workbench

    assert "widgets" in dir(adit_workbench) and "connect" in dir(adit_workbench)


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_type_checking_imports_match_all(package: str) -> None:
    module = importlib.import_module(package)
    assert _type_checking_names(module) == set(module.__all__) - {"__version__"}


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_star_import_gives_everything(package: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    assert set(importlib.import_module(package).__all__) <= set(namespace)
