"""Run the sandbox PACS as a detached process: start, stop, status and C-MOVE peers.

Everything lives in ``settings.data_dir / "sandbox"``: the archive (``files/``,
``index.sqlite3``), ``sandbox.pid``, ``sandbox.log`` and ``state.json`` (AE title, host,
port, pid, allow_get and the C-MOVE peers). The server re-reads the peers from the state
file on every C-MOVE, so :func:`set_peers` takes effect without a restart and the peers
survive one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import InputError, NodeError
from ..locks import folder_lock
from .archive import INDEX_NAME

__all__ = [
    "SandboxError",
    "SandboxStatus",
    "set_peers",
    "start_background",
    "status",
    "stop_background",
]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_HOST = "127.0.0.1"
# Children started by this process: their pids stay "alive" as zombies until reaped.
_children: dict[int, subprocess.Popen[bytes]] = {}


class SandboxError(NodeError):
    """The sandbox PACS could not be started or stopped (the message has the log tail)."""


@dataclass(frozen=True)
class SandboxStatus:
    """What is known about the background sandbox PACS.

    Attributes:
        ae_title: Its AE title.
        host: Address it listens on (always loopback).
        port: Its port.
        pid: Process id, or None when it is not running.
        running: Whether the process is alive.
        counts: Patients, studies, series and instances in its archive.
        allow_get: Whether it serves C-GET.
        peers: C-MOVE destinations, AE title → (host, port).
        root: Folder of the archive, state, pid and log files.
    """

    ae_title: str
    host: str
    port: int
    pid: int | None
    running: bool
    counts: dict[str, int] = field(default_factory=dict)
    allow_get: bool = True
    peers: dict[str, tuple[str, int]] = field(default_factory=dict)
    root: Path | None = None


def _dir(settings: Settings) -> Path:
    return settings.data_dir / "sandbox"


def _read_state(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_state(root: Path, state: dict[str, Any]) -> None:
    # Atomic, because the server may be reading the peers at this very moment.
    tmp = root / f".state.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, root / "state.json")


def _peers(state: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {str(k): (str(v[0]), int(v[1])) for k, v in state.get("peers", {}).items()}


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process reusing the pid: not our sandbox
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust the signal probe
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and b"adit_workbench.sandbox" in cmdline


def _read_pid(root: Path, name: str = "sandbox.pid") -> int | None:
    try:
        return int((root / name).read_text().strip())
    except (OSError, ValueError):
        return None


def _counts(root: Path) -> dict[str, int]:
    index = root / INDEX_NAME
    if not index.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
            return {
                name: int(db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])
                for name in ("patients", "studies", "series", "instances")
            }
    except sqlite3.Error:
        return {}


def _log_tail(root: Path, chars: int = 2000) -> str:
    try:
        return (root / "sandbox.log").read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _echo(host: str, port: int, ae_title: str, calling: str) -> bool:
    from pynetdicom import AE

    from .pacs import Verification

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        return False
    try:
        rsp = assoc.send_c_echo()
        return bool(rsp) and int(getattr(rsp, "Status", -1)) == 0
    finally:
        assoc.release()


def _port_open(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def status(settings: Settings) -> SandboxStatus | None:
    """The sandbox's state, or None if it was never started in this data dir."""
    root = _dir(settings)
    state = _read_state(root)
    if state is None:
        return None
    pid = _read_pid(root)
    running = pid is not None and _alive(pid)
    return SandboxStatus(
        ae_title=str(state.get("ae_title", settings.sandbox_ae_title)),
        host=str(state.get("host", _HOST)),
        port=int(state.get("port", settings.sandbox_port)),
        pid=pid if running else None,
        running=running,
        counts=_counts(root),
        allow_get=bool(state.get("allow_get", True)),
        peers=_peers(state),
        root=root,
    )


def start_background(
    settings: Settings,
    *,
    allow_get: bool = True,
    peers: Mapping[str, tuple[str, int]] | None = None,
) -> SandboxStatus:
    """Start the sandbox PACS as a detached process, or return the running one.

    Idempotent: a running sandbox is returned as it is (with ``peers`` applied), unless
    it runs with another ``allow_get``, in which case it is restarted with the new one.

    A new archive is seeded with ``settings.sandbox_patients`` synthetic patients. The
    workbench's own receiver (``settings.ae_title`` at ``receiver_host:receiver_port``)
    is always a C-MOVE peer; ``peers`` replaces the other persisted peers when given.

    Args:
        settings: Where (``data_dir``) and how (``sandbox_*``) to run.
        allow_get: Serve C-GET; False makes it answer every C-GET with 0x0124.
        peers: C-MOVE destinations, AE title → (host, port).

    Returns:
        The status once the server answers a C-ECHO.

    Raises:
        SandboxError: If the process exits or does not answer within a minute; the
            message carries the tail of ``sandbox.log``.
    """
    root = _dir(settings)
    with folder_lock(root):
        current = status(settings)
        if current is not None and current.running:
            if peers is not None:
                _store_peers(root, settings, peers)
            if current.allow_get == allow_get:
                return status(settings) or current
            # Asked for other services than it runs with: restart rather than mislead.
            assert current.pid is not None
            _terminate(current.pid)
        if _port_open(_HOST, settings.sandbox_port):
            raise SandboxError(
                settings.sandbox_ae_title,
                "start",
                f"port {settings.sandbox_port} is already in use by another program; "
                "set ADIT_WB_SANDBOX_PORT to a free port",
            )
        (root / "sandbox.ready").unlink(missing_ok=True)
        old = _read_state(root) or {}
        state = {
            "ae_title": settings.sandbox_ae_title,
            "host": _HOST,
            "port": settings.sandbox_port,
            "pid": None,
            "allow_get": allow_get,
        }
        _write_state(root, state)
        _store_peers(root, settings, peers if peers is not None else _peers(old))
        cmd = [
            sys.executable, "-m", "adit_workbench.sandbox", "serve",
            "--root", str(root), "--ae-title", settings.sandbox_ae_title, "--host", _HOST,
            "--port", str(settings.sandbox_port), "--patients", str(settings.sandbox_patients),
            "--state-file", str(root / "state.json"), "--ready-file", str(root / "sandbox.ready"),
        ]  # fmt: skip
        if not allow_get:
            cmd.append("--no-get")
        env = {**os.environ, "ADIT_WB_DATA_DIR": str(settings.data_dir)}
        with open(root / "sandbox.log", "ab") as log_fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the notebook kernel or CLI that started it
                env=env,
            )
        _children[proc.pid] = proc
        (root / "sandbox.pid").write_text(f"{proc.pid}\n")
        state = {**(_read_state(root) or state), "pid": proc.pid}
        _write_state(root, state)
        _wait_ready(root, settings, proc)
    final = status(settings)
    assert final is not None
    return final


def _wait_ready(root: Path, settings: Settings, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    ae, port = settings.sandbox_ae_title, settings.sandbox_port
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if (
            _read_pid(root, "sandbox.ready") == proc.pid
            and _port_open(_HOST, port)
            and _echo(_HOST, port, ae, settings.ae_title)
        ):
            return
        time.sleep(0.1)
    exited = proc.poll() is not None
    if not exited:
        _terminate(proc.pid)
    (root / "sandbox.pid").unlink(missing_ok=True)
    why = f"exited with code {proc.returncode}" if exited else "did not answer C-ECHO in time"
    raise SandboxError(ae, "start", f"sandbox on port {port} {why}\n{_log_tail(root)}")


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)


def stop_background(settings: Settings) -> bool:
    """Stop the background sandbox; returns False if it was not running."""
    root = _dir(settings)
    with folder_lock(root):
        pid = _read_pid(root)
        running = pid is not None and _alive(pid)
        if pid is not None and running:
            _terminate(pid)
        (root / "sandbox.pid").unlink(missing_ok=True)
        state = _read_state(root)
        if state is not None:
            _write_state(root, {**state, "pid": None})
        return running


def _store_peers(root: Path, settings: Settings, peers: Mapping[str, tuple[str, int]]) -> None:
    receiver_host = settings.receiver_host
    if receiver_host in ("0.0.0.0", "", "::"):
        receiver_host = _HOST  # a listener on all interfaces is reachable on loopback
    merged = {settings.ae_title: (receiver_host, settings.receiver_port), **peers}
    for ae_title, (_host, port) in merged.items():
        if not ae_title or len(ae_title) > 16 or not 0 < int(port) < 65536:
            raise InputError(f"sandbox peer {ae_title!r}: need a 1-16 character AE and a port")
    state = _read_state(root) or {}
    state["peers"] = {k: [h, int(p)] for k, (h, p) in sorted(merged.items())}
    _write_state(root, state)


def set_peers(settings: Settings, peers: Mapping[str, tuple[str, int]]) -> None:
    """Replace the sandbox's C-MOVE destinations (the workbench receiver always stays).

    Takes effect at the next C-MOVE of a running sandbox, and survives restarts.
    """
    root = _dir(settings)
    with folder_lock(root):
        _store_peers(root, settings, peers)
