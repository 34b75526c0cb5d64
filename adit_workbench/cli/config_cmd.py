"""``adit-workbench config``: the effective settings, secrets masked."""

from __future__ import annotations

import click

from . import app
from ._common import clean


@app.command("config")
@click.option("--help-text", is_flag=True, help="Also print each setting's help.")
def show_config(help_text: bool) -> None:
    """Print the effective settings (environment prefix ADIT_WB_), secrets masked."""
    from ..config import get_settings

    rows = list(get_settings().describe())
    width = max(len(name) for name, _, _ in rows)
    for name, value, text in rows:
        click.echo(clean(f"{name:<{width}}  {value}"))
        if help_text:
            click.echo(f"{'':<{width}}  # {text}")
