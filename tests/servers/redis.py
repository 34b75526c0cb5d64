"""Redis for tests: one redis-server per session on a free port, no persistence.

Fixture ``redis_url`` (session): ``redis://127.0.0.1:PORT/0``. Tests that share it should
use their own queue names or flush the database they use.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers._util import free_port, require, stop_process, wait_until


def _ping(port: int) -> bool:
    # Raw RESP rather than redis-py so that the fixture does not depend on the client.
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Start redis-server for the session (no RDB, no AOF) and stop it at the end."""
    binary = require("redis-server", "the Debian package redis-server")
    base = Path(tempfile.mkdtemp(prefix="wb-redis-"))
    log = base / "redis.log"
    port = free_port()
    cmd = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(base),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--logfile",
        str(log),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _ping(port), 10, "redis-server", proc=proc, log=log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)
