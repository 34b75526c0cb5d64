"""``adit-workbench lab``: JupyterLab (with Voilà) on the embedded defaults, at the quickstart.

The notebooks and dashboards of a source checkout are copied into a workspace in the
data folder the first time (never over the user's edited copies), so that trying the
quickstart does not change the checkout. JupyterLab runs on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from ..errors import ConfigurationError
from . import app

#: Where a source checkout keeps the notebooks and dashboards (absent in a wheel install).
_CHECKOUT = Path(__file__).resolve().parents[2]
_FOLDERS = ("notebooks", "dashboards")


def prepare_workspace(workspace: Path, checkout: Path = _CHECKOUT) -> list[Path]:
    """Copy the checkout's notebooks and dashboards into ``workspace``; returns new files."""
    copied = []
    for folder in _FOLDERS:
        for source in sorted((checkout / folder).glob("*.ipynb")):
            target = workspace / ("" if folder == "notebooks" else folder) / source.name
            if target.exists():
                continue  # the user's copy, perhaps edited: keep it
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied.append(target)
    return copied


def lab_command(workspace: Path, *, port: int, open_browser: bool) -> list[str]:
    """The JupyterLab command line for ``workspace``."""
    start = "/lab/tree/quickstart.ipynb" if (workspace / "quickstart.ipynb").exists() else "/lab"
    command = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={workspace}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--LabApp.default_url={start}",
    ]  # fmt: skip
    if not open_browser:
        command.append("--no-browser")
    if getattr(os, "geteuid", lambda: -1)() == 0:
        # Containers often run as root; JupyterLab refuses that unless told.
        command.append("--allow-root")
    return command


@app.command("lab")
@click.option("--port", default=8888, show_default=True, help="Port on 127.0.0.1.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser tab.")
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder JupyterLab shows (default: DATA_DIR/lab).",
)
@click.option("--dry-run", is_flag=True, help="Prepare the workspace, print the command.")
def lab(port: int, no_browser: bool, workspace: Path | None, dry_run: bool) -> int:
    """Start JupyterLab with the quickstart notebook and the dashboards."""
    if not _has_jupyterlab():
        raise ConfigurationError(
            "JupyterLab is not installed: pip install 'adit-workbench[jupyter]'"
        )
    from ..config import get_settings

    settings = get_settings()
    workspace = (workspace or settings.data_dir / "lab").expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    for path in prepare_workspace(workspace):
        click.echo(f"copied {path.relative_to(workspace)}")
    command = lab_command(workspace, port=port, open_browser=not no_browser)
    if dry_run:
        click.echo(shlex.join(command))
        return 0
    click.echo(f"JupyterLab on http://127.0.0.1:{port}/ in {workspace} (Ctrl-C stops it)")
    sys.stdout.flush()
    if os.name == "posix":
        # Become JupyterLab: signals (Ctrl-C, a service manager's SIGTERM) reach it directly.
        os.execv(command[0], command)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def _has_jupyterlab() -> bool:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return False
    return True
