"""PostgreSQL for tests: one throw-away cluster per session, one fresh database per test.

The cluster lives in a temporary folder, listens on 127.0.0.1 on a free port (its unix
socket stays in the temp folder too) and runs with fsync off, so start-up takes about a
second. PostgreSQL refuses to run as root, so as root every server command runs as the
``postgres`` system user through ``setpriv`` and the folder is handed to that user.

Fixtures:

* ``postgres_url`` (session): ``postgresql+psycopg://workbench:…@127.0.0.1:PORT/workbench``.

The role's password is made per server (:func:`new_password`): a kernel attacking the
database (``tests/access/test_kernel_attacks.py``) must not be able to read it in this
file. It starts with :data:`PASSWORD_PREFIX`, so that a test can still search output for it.
* ``database_url`` (function, parametrized ``sqlite`` / ``postgresql``): an empty database
  of its own for each test, so persistence tests run on both back-ends in isolation.
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.servers._util import free_port, require, stop_process, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = "the Debian package postgresql (server binaries initdb, postgres)"
USER = "workbench"
#: How every generated password begins (a test may assert it appears in no output).
PASSWORD_PREFIX = "wb-test-pw-"
DATABASE = "workbench"
_counter = itertools.count(1)


def _binary(name: str) -> str:
    candidate = PG_BIN / name
    return require(str(candidate) if candidate.exists() else name, INSTALL_HINT)


def _as_server_user(cmd: list[str], folder: Path) -> list[str]:
    """Prefix ``cmd`` so that it runs unprivileged when we are root."""
    if os.geteuid() != 0:
        return cmd
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root but there is no 'postgres' user to run PostgreSQL as")
    os.chown(folder, account.pw_uid, account.pw_gid)
    # setpriv execs the server in place, so the Popen handle is the postmaster itself and
    # SIGTERM reaches it directly (runuser/su would sit in between).
    return [
        require("setpriv", "util-linux"),
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        "--",
        *cmd,
    ]


def new_password() -> str:
    """A password for one server's role (URL-safe: it goes into database URLs as is)."""
    return PASSWORD_PREFIX + secrets.token_urlsafe(18)


def _connect_admin(port: int, password: str, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=password,
        dbname=dbname,
        autocommit=True,
        connect_timeout=2,
    )


class PostgresServer:
    """A running throw-away cluster (what the session fixture yields internally)."""

    def __init__(self, port: int, password: str) -> None:
        self.port = port
        self.password = password

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        with _connect_admin(self.port, self.password) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{USER}" STRATEGY FILE_COPY')

    def drop_database(self, name: str) -> None:
        with _connect_admin(self.port, self.password) as conn:
            # FORCE: a test that forgot to dispose its engine must not break the next one.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a PostgreSQL cluster for the session and stop it at the end."""
    initdb = _binary("initdb")
    postgres = _binary("postgres")
    # Not under pytest's basetemp: that is mode 0700 and owned by root, which the
    # unprivileged server user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    os.chmod(base, 0o700)
    data, log = base / "data", base / "server.log"
    pwfile = base / "pw"
    password = new_password()
    pwfile.write_text(password + "\n")
    proc: subprocess.Popen[bytes] | None = None
    try:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}
        cmd = _as_server_user(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            base,
        )
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"initdb failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
        port = free_port()
        server_cmd = _as_server_user(
            [
                postgres,
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(base),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=100",
            ],
            base,
        )
        with log.open("wb") as log_fh:
            proc = subprocess.Popen(server_cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT)

        def ready() -> bool:
            with _connect_admin(port, password):
                return True

        wait_until(ready, 20, "PostgreSQL", proc=proc, log=log)
        pwfile.unlink()  # initdb has read it; the server keeps only the SCRAM verifier
        server = PostgresServer(port, password)
        server.create_database(DATABASE)
        yield server
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a database in the session's PostgreSQL server (shared by the session)."""
    return postgres_server.url()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own, on SQLite or on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"test_{os.getpid()}_{next(_counter)}"
    server.create_database(name)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)
