"""Redis for tests: one redis-server per session on a free port, no persistence.

Fixture ``redis_url`` (session): ``redis://:PASSWORD@127.0.0.1:PORT/0``. Tests that share
it should use their own queue names or flush the database they use.

The server requires a password made per run (``requirepass``), as a deployment's does
(``deploy/README.md``, ``adit-workbench hub start``): any local account can reach a port
on 127.0.0.1, and whoever can write to the queue makes a worker run their job. Only the
URL carries the password, and a 0600 config file: never the server's command line, which
every account may read in ``/proc/PID/cmdline``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers._util import free_port, require, stop_process, wait_until


def _ping(port: int, password: str) -> bool:
    # Raw RESP rather than redis-py so that the fixture does not depend on the client.
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        answer = b""
        while answer.count(b"\r\n") < 2:
            chunk = sock.recv(64)
            if not chunk:
                return False
            answer += chunk
        return answer == b"+OK\r\n+PONG\r\n"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Start redis-server for the session (no RDB, no AOF) and stop it at the end."""
    binary = require("redis-server", "the Debian package redis-server")
    base = Path(tempfile.mkdtemp(prefix="wb-redis-"))
    log = base / "redis.log"
    port = free_port()
    password = secrets.token_hex(16)
    conf = base / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"requirepass {password}\n")
    cmd = [
        binary,
        str(conf),
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
        wait_until(lambda: _ping(port, password), 10, "redis-server", proc=proc, log=log)
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)
