"""``adit-workbench nodes``: register, list, echo, probe and remove DICOM nodes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from . import app
from ._common import clean, echo_table, is_remote, open_workbench

if TYPE_CHECKING:
    from ..dicom.spec import Capabilities, FolderSpec, ServerSpec


@app.group("nodes")
def nodes() -> None:
    """DICOM servers and folders known to the workbench."""


@nodes.command("add-server")
@click.argument("name")
@click.option("--ae", "ae_title", required=True, help="AE title of the server.")
@click.option("--host", required=True, help="Host name or address.")
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="DICOM port.")
@click.option("--dicomweb", "dicomweb_url", default=None, help="DICOMweb root URL.")
def add_server(name: str, ae_title: str, host: str, port: int, dicomweb_url: str | None) -> None:
    """Register a DICOM server NAME (probe it afterwards to learn what it supports)."""
    open_workbench().add_server(
        name, ae_title=ae_title, host=host, port=port, dicomweb_url=dicomweb_url
    )
    click.echo(clean(f"added server {name} ({ae_title}@{host}:{port})"))


@nodes.command("add-folder")
@click.argument("name")
@click.argument("path")
def add_folder(name: str, path: str) -> None:
    """Register a folder NAME at PATH as a source or destination."""
    spec = open_workbench().add_folder(name, path)
    click.echo(clean(f"added folder {name} ({spec.path})"))


@nodes.command("list")
def list_nodes() -> None:
    """List registered nodes with what they support."""
    from ..dicom.spec import ServerSpec

    specs = open_workbench().node_specs()
    if not specs:
        click.echo("no nodes registered (see: adit-workbench nodes add-server --help)")
        return
    rows = [("NAME", "KIND", "ADDRESS", "SUPPORTS", "PROBED")]
    for spec in specs:
        if isinstance(spec, ServerSpec):
            address = f"{spec.ae_title}@{spec.host}:{spec.port}"
            if spec.dicomweb_root_url:
                address += f" {spec.dicomweb_root_url}"
            caps = spec.capabilities
            probed = caps.probed_at.strftime("%Y-%m-%d %H:%M") if caps.probed_at else "never"
            rows.append((spec.name, "server", address, _supports(caps), probed))
        else:
            rows.append((spec.name, "folder", _folder_path(spec), "read,write", "-"))
    echo_table(rows)


def _folder_path(spec: FolderSpec) -> str:
    # The service does not tell its clients where its folders are.
    return str(spec.path) if str(spec.path) not in ("", ".") else "(on the service)"


def _spec(wb: Any, name: str) -> ServerSpec | FolderSpec:
    from pathlib import Path

    from ..dicom.spec import FolderSpec

    if not is_remote(wb):
        spec: ServerSpec | FolderSpec = wb.node_spec(name)
        return spec
    node = wb.node(name)
    return node.spec if node.spec is not None else FolderSpec(node.name, Path(""))


@nodes.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Show node NAME: its address or folder and what it was probed to support."""
    from ..dicom.spec import ServerSpec

    spec = _spec(open_workbench(), name)
    if isinstance(spec, ServerSpec):
        caps = spec.capabilities
        probed = caps.probed_at.strftime("%Y-%m-%d %H:%M") if caps.probed_at else "never"
        fields = [
            ("name", spec.name),
            ("kind", "server"),
            ("address", f"{spec.ae_title}@{spec.host}:{spec.port}"),
            ("dicomweb", spec.dicomweb_root_url or "-"),
            ("supports", _supports(caps)),
            ("probed", probed),
            ("max results", str(spec.max_search_results)),
            ("associations", str(spec.max_associations)),
        ]
    else:
        fields = [("name", spec.name), ("kind", "folder"), ("path", _folder_path(spec))]
    for key, value in fields:
        click.echo(clean(f"{key:>12}: {value}"))


@nodes.command("echo")
@click.argument("name")
def echo(name: str) -> None:
    """Verify that node NAME answers (C-ECHO, or the DICOMweb/folder equivalent)."""
    started = time.perf_counter()
    open_workbench().echo(name)
    click.echo(f"{clean(name)}: echo ok ({(time.perf_counter() - started) * 1000:.0f} ms)")


@nodes.command("probe")
@click.argument("name")
def probe(name: str) -> None:
    """Measure what node NAME really supports and store the result."""
    caps = open_workbench().probe(name)
    click.echo(f"{clean(name)}: probed")
    for flag, supported in caps.as_flags().items():
        detail = clean(caps.details.get(flag, ""))
        click.echo(f"  {flag:<18} {'yes' if supported else 'no ':<4} {detail}".rstrip())


@nodes.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Unregister node NAME."""
    open_workbench().remove_node(name)
    click.echo(f"removed {clean(name)}")


def _supports(caps: Capabilities) -> str:
    short = {
        "patient_root_find": "find(P)",
        "study_root_find": "find(S)",
        "patient_root_get": "get(P)",
        "study_root_get": "get(S)",
        "patient_root_move": "move(P)",
        "study_root_move": "move(S)",
    }
    names = [short.get(flag, flag) for flag, ok in caps.as_flags().items() if ok]
    return ",".join(names) or "-"
