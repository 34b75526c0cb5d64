"""``adit-workbench sandbox``: the embedded sandbox PACS with synthetic patients."""

from __future__ import annotations

import click

from . import app
from ._common import clean, open_workbench, service_host_only


@app.group("sandbox")
def sandbox() -> None:
    """Embedded Query/Retrieve SCP on 127.0.0.1, registered as node SANDBOX."""


@sandbox.command("start")
@click.option(
    "--no-get", is_flag=True, help="Refuse C-GET (to see how the workbench copes with such a PACS)."
)
@service_host_only
def start(no_get: bool) -> None:
    """Start the sandbox PACS (seeded with synthetic patients on first start)."""
    status = open_workbench().start_sandbox(allow_get=not no_get)
    click.echo(
        f"sandbox running: {status.ae_title}@{status.host}:{status.port} (pid {status.pid}), "
        f"registered as node SANDBOX"
    )


@sandbox.command("stop")
@service_host_only
def stop() -> None:
    """Stop the sandbox PACS."""
    stopped = open_workbench().stop_sandbox()
    click.echo("sandbox stopped" if stopped else "sandbox was not running")


@sandbox.command("status")
@service_host_only
def status() -> None:
    """Say whether the sandbox PACS runs, where, and what it holds."""
    state = open_workbench().sandbox_status()
    if state is None or not state.running:
        click.echo("sandbox not running")
        raise click.exceptions.Exit(3)
    click.echo(f"sandbox running: {state.ae_title}@{state.host}:{state.port} (pid {state.pid})")
    for key, value in (state.counts or {}).items():
        click.echo(clean(f"  {key}: {value}"))
