"""The attacks of issue 12, each run from an ordinary user's kernel in a real JupyterHub.

The shipped hub configuration (``tests/access/hub_fixtures.py``, ``own-accounts``): the
user servers run as their own unprivileged OS accounts, the workbench service and its
workers as another, PostgreSQL and Redis on 127.0.0.1 with passwords made for this run.
One hub and one server of alice for the module (a server takes 30-60 s to start on a
loaded machine); every test runs its attack in alice's one kernel, prints what it saw as
JSON, and asserts from the trusted side (the database, Redis, the files) that the attack
changed nothing.

alice's hub group ``radiology`` may use ``explorer`` (no transfer permission), node PACS
as a source and folder OUT as a destination. Node HIDDEN is nobody's. bob owns a finished
transfer job, created on the trusted side.

Needs root (to create the accounts): skipped with a message otherwise, failing when
``CI=true`` (``tests/servers/shared_python.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis
from sqlalchemy import select
from sqlalchemy.engine import make_url

from adit_workbench.access import Access, Identity, IdentitySource, sign_in
from adit_workbench.config import get_settings
from adit_workbench.dicom.spec import FolderSpec, ServerSpec
from adit_workbench.store import Database
from adit_workbench.store import nodes as node_store
from adit_workbench.store.access import AuditEvent
from adit_workbench.store.jobs import Job, Task
from tests.access.hub_fixtures import SERVER_START, os_accounts, shipped_hub
from tests.servers._util import wait_until
from tests.servers.jupyterhub import Hub
from tests.servers.postgres import USER as PG_USER
from tests.servers.postgres import PostgresServer
from tests.servers.shared_python import shared_python  # noqa: F401 (a fixture)

pytestmark = pytest.mark.postgres

#: The password the fixture's role had when it was a constant in the test sources (which
#: every account can read): what an attacker tries first.
OLD_PASSWORD = "wb-test-pw"
HIDDEN = {"name": "HIDDEN", "ae": "HIDDEN_AE", "host": "10.99.12.34", "port": 11999}
PACS_AUTH = "Bearer pacs-dicomweb-credential-7f3a"
BOB_PATIENT, BOB_PSEUDONYM = "BOBPAT-55821", "BOBPSEUDO-1"

# Defined once in alice's kernel: raw REST calls with her server's hub token, and the
# JSON report each attack prints last.
_PRELUDE = """\
import json, os, subprocess, sys
import requests
BASE = os.environ["ADIT_WB_SERVICE_URL"].rstrip("/") + "/"
TOKEN = os.environ["JUPYTERHUB_API_TOKEN"]
def api(method, path, headers=None, **kw):
    h = {"Authorization": f"token {TOKEN}", **(headers or {})}
    r = requests.request(method, BASE + path, headers=h, timeout=60, **kw)
    try:
        body = r.json()
    except ValueError:
        body = r.text
    return [r.status_code, body]
def failure(call):
    try:
        value = call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return f"SUCCEEDED: {value!r}"
def report(value):
    print(json.dumps(value, default=str))
print("ready")
"""


@dataclass
class Target:
    """The running hub, alice's kernel, and the trusted side's handles."""

    hub: Hub
    kernel: str
    alice: str
    bob: str
    database: Database
    settings: dict[str, str]
    pg_port: int
    pg_database: str
    redis_url: str
    out_dir: Path
    bob_job: int

    def run(self, code: str) -> Any:
        """Run ``code`` in alice's kernel; the JSON it printed last."""
        out, _ = self.hub.run_in_kernel(self.alice, code, kernel=self.kernel, timeout=SERVER_START)
        return json.loads(out.strip().splitlines()[-1])

    def radiology(self) -> set[str]:
        """The permissions of alice's group, read on the trusted side."""
        boss = Access(self.database, "boss")
        return set(boss.admin.group("radiology").permissions)

    def jobs(self) -> list[tuple[int, str, str]]:
        with self.database.session() as session:
            rows = session.execute(select(Job.id, Job.owner, Job.status).order_by(Job.id))
            return [(int(i), str(o), str(s)) for i, o, s in rows]


def _seed(database: Database, out_dir: Path, bob: str) -> int:
    """Nodes, alice's group's rights, and bob's finished job (its id)."""
    with database.session() as session:
        node_store.add_folder(session, FolderSpec("OUT", out_dir))
        node_store.add_server(
            session,
            ServerSpec(
                "PACS", "PACS_AE", "127.0.0.1", 11112,
                dicomweb_root_url="http://127.0.0.1:9/dicom-web", dicomweb_authorization=PACS_AUTH,
            ),
        )  # fmt: skip
        node_store.add_server(
            session, ServerSpec(HIDDEN["name"], HIDDEN["ae"], HIDDEN["host"], HIDDEN["port"])
        )
    boss = sign_in(database, Identity("boss", IdentitySource.SERVICE), embedded=False)
    boss.admin.grant("radiology", "PACS", source=True)
    boss.admin.grant("radiology", "OUT", destination=True)
    boss.admin.add_permission("radiology", "explorer")
    with database.session() as session:
        job = Job(kind="selective_transfer", owner=bob, status="SUCCESS", source="PACS",
                  destination="OUT", message="done", archive_password="bob-zip-pw")  # fmt: skip
        job.tasks = [
            Task(
                source="PACS",
                destination="OUT",
                status="SUCCESS",
                patient_id=BOB_PATIENT,
                study_uid="1.2.826.0.1.3680043.99.5",
                pseudonym=BOB_PSEUDONYM,
            )
        ]
        session.add(job)
        session.flush()
        return int(job.id)


@pytest.fixture(scope="module")
def target(
    request: pytest.FixtureRequest,
    configurable_http_proxy: str,
    postgres_server: PostgresServer,
    redis_url: str,
) -> Iterator[Target]:
    """One shipped hub (own accounts) and alice's kernel for every attack of the module."""
    shared = request.getfixturevalue("shared_python")
    name = f"attacks_{os.getpid()}"
    postgres_server.create_database(name)
    database_url = postgres_server.url(name)
    try:
        with (
            os_accounts("own-accounts", shared) as accounts,
            shipped_hub(accounts, configurable_http_proxy, database_url, redis_url) as (
                hub,
                settings,
            ),
        ):
            alice, bob = accounts["alice"], accounts["bob"]
            out_dir = accounts["base"] / "out"
            database = Database(database_url)
            with pytest.MonkeyPatch.context() as env:
                # Seeded as the service's host would: node credentials sealed under its secret.
                env.setenv("ADIT_WB_SECRET_FILE", settings["secret"])
                get_settings.cache_clear()
                bob_job = _seed(database, out_dir, bob)
            get_settings.cache_clear()
            hub.set_groups(alice, ["radiology"])
            health = f"{hub.url}/services/workbench/api/health"
            wait_until(
                lambda: requests.get(health, timeout=10).ok, SERVER_START, "the workbench service",
                proc=hub.proc, log=hub.log,
            )  # fmt: skip
            hub.spawn(alice, timeout=SERVER_START)
            out, kernel = hub.run_in_kernel(alice, _PRELUDE, timeout=SERVER_START)
            assert out.strip() == "ready"
            yield Target(
                hub, kernel, alice, bob, database, settings, postgres_server.port, name,
                redis_url, out_dir, bob_job,
            )  # fmt: skip
            database.dispose()
    finally:
        postgres_server.drop_database(name)


def test_the_kernel_is_alice_and_holds_only_the_service_url(target: Target) -> None:
    seen = target.run(
        "import pwd, adit_workbench as aw\n"
        "from adit_workbench.config import get_settings\n"
        "s = get_settings()\n"
        "report({'me': pwd.getpwuid(os.getuid()).pw_name, 'wb': repr(aw.connect()),\n"
        "        'db': s.database_url, 'redis': s.redis_url,\n"
        "        'env': sorted(k for k in os.environ if k.startswith('ADIT_WB_'))})"
    )
    assert seen["me"] == target.alice
    assert seen["wb"].startswith(f"<RemoteWorkbench user={target.alice!r}")
    assert seen["db"] is None and seen["redis"] is None
    assert seen["env"] == ["ADIT_WB_SERVICE_URL"]


def test_sql_as_the_schema_owner_is_refused(target: Target) -> None:
    before = target.radiology()
    seen = target.run(
        "import psycopg\n"
        f"port, db, role = {target.pg_port}, {target.pg_database!r}, {PG_USER!r}\n"
        "tries = {}\n"
        f"for pw in [{OLD_PASSWORD!r}, '', role, 'postgres']:\n"
        "    for user in (role, 'postgres'):\n"
        "        tries[f'{user}/{pw}'] = failure(lambda: psycopg.connect(host='127.0.0.1',\n"
        "            port=port, user=user, password=pw, dbname=db, connect_timeout=10).close())\n"
        "report(tries)"
    )
    assert len(seen) == 8
    for attempt, outcome in seen.items():
        assert outcome.startswith("OperationalError"), (attempt, outcome)
        assert "password authentication failed" in outcome or "no password" in outcome, outcome
    assert target.radiology() == before == {"explorer"}


def test_access_built_for_another_user_acts_as_nobody(target: Target) -> None:
    bob, pg = target.bob, f"127.0.0.1:{target.pg_port}/{target.pg_database}"
    seen = target.run(
        "from adit_workbench.access import Access\n"
        "from adit_workbench.store import Database\n"
        "import adit_workbench as aw\n"
        f"bob = {bob!r}\n"
        f"db = Database('postgresql+psycopg://workbench:{OLD_PASSWORD}@{pg}')\n"
        "out = {'shared_db': failure(lambda: Access(db, bob).profile())}\n"
        "out['grant'] = failure(lambda: Access(db, 'boss').admin.add_permission('radiology',\n"
        "                                                                   'admin'))\n"
        "claims = [{'headers': {h: bob}} for h in ('X-Remote-User', 'X-Forwarded-User',\n"
        "          'Remote-User', 'X-Jupyterhub-User', 'X-Workbench-User')]\n"
        "claims += [{'params': {'user': bob}}, {'params': {'owner': bob, 'all_users': 1}}]\n"
        "out['me'] = [api('GET', 'api/me', **c)[1]['user'] for c in claims]\n"
        "out['jobs'] = [api('GET', 'api/jobs', **c) for c in claims]\n"
        "hub = os.environ['JUPYTERHUB_API_URL']\n"
        "r = requests.post(f'{hub}/users/{bob}/tokens', json={},\n"
        "                  headers={'Authorization': f'token {TOKEN}'}, timeout=30)\n"
        "out['bob_token'] = [r.status_code, r.text[:300]]\n"
        "out['self_admin'] = api('POST', 'api/admin/groups/radiology/permissions',\n"
        "                        json={'permission': 'admin'})\n"
        "out['remote_jobs'] = failure(lambda: aw.connect().jobs.list(all_users=True))\n"
        "report(out)"
    )
    # Database wraps the driver's error, with the password masked.
    assert "password authentication failed" in seen["shared_db"], seen["shared_db"]
    assert "password authentication failed" in seen["grant"], seen["grant"]
    assert seen["me"] == [target.alice] * 7  # no header or parameter names the caller
    for status, body in seen["jobs"]:
        assert status in (200, 403), (status, body)
        assert status == 403 or body == [], body  # alice has no job; bob's never shows
    assert seen["bob_token"][0] == 403, seen["bob_token"]
    assert seen["self_admin"][0] == 403 and seen["self_admin"][1]["error"] == "PermissionDenied"
    assert seen["remote_jobs"].startswith("PermissionDenied"), seen["remote_jobs"]
    assert target.radiology() == {"explorer"}
    assert (target.bob_job, bob, "SUCCESS") in target.jobs()


def test_a_monkeypatched_client_is_still_refused(target: Target) -> None:
    jobs_before = target.jobs()
    seen = target.run(
        "import adit_workbench as aw\n"
        "from adit_workbench.access import Access, Permission\n"
        "from adit_workbench.remote.access import RemoteAccess\n"
        "import adit_workbench.remote.client as client_module\n"
        "saved = [(Access, n, Access.__dict__[n]) for n in ('require', 'require_node',\n"
        "          'permissions')] + [(RemoteAccess, n, RemoteAccess.__dict__[n])\n"
        "          for n in ('has', 'is_admin', 'permissions')]\n"
        "saved.append((client_module, 'raise_error', client_module.raise_error))\n"
        "Access.require = Access.require_node = lambda *a, **k: None\n"
        "Access.permissions = lambda self: frozenset(Permission)\n"
        "RemoteAccess.has = lambda self, p: True\n"
        "RemoteAccess.is_admin = property(lambda self: True)\n"
        "RemoteAccess.permissions = lambda self: frozenset(Permission)\n"
        "try:\n"
        "    wb = aw.connect()\n"
        "    out = {'admin_shown': wb.access.is_admin, 'facade': {\n"
        "        'add_folder': failure(lambda: wb.add_folder('EVIL', '/tmp/evil')),\n"
        "        'remove_node': failure(lambda: wb.remove_node('PACS')),\n"
        "        'all_jobs': failure(lambda: wb.jobs.list(all_users=True)),\n"
        "        'transfer': failure(lambda: wb.transfer(['1.2.3.4'], source='PACS', to='OUT')),\n"
        "    }}\n"
        "    client_module.raise_error = lambda response: None  # errors pass as answers\n"
        "    out['add'] = failure(lambda: wb._client._session.post(wb.url + 'api/nodes',\n"
        "        json={'name': 'EVIL', 'kind': 'folder', 'path': '/tmp/evil'}).status_code)\n"
        "    out['remove'] = wb._client._session.delete(wb.url + 'api/nodes/PACS').status_code\n"
        "    out['grant'] = wb._client._session.post(\n"
        "        wb.url + 'api/admin/groups/radiology/permissions',\n"
        "        json={'permission': 'admin'}).status_code\n"
        "    out['transfer'] = wb._client._session.post(wb.url + 'api/jobs/transfer',\n"
        "        json={'studies': ['1.2.3.4'], 'source': 'PACS', 'to': 'OUT'}).json()\n"
        "    out['site'] = api('PUT', 'api/admin/site', json={'maintenance': True})\n"
        "finally:\n"
        "    for owner, name, value in saved:\n"
        "        setattr(owner, name, value)\n"
        "report(out)"
    )
    assert seen["admin_shown"] is True  # the client believes it …
    for call, outcome in seen["facade"].items():
        assert outcome.startswith("PermissionDenied"), (call, outcome)
    assert seen["add"] == "SUCCEEDED: 403"  # … the service does not
    assert seen["remove"] == 403 and seen["grant"] == 403
    assert seen["transfer"]["error"] == "PermissionDenied"
    assert "selective_transfer" in seen["transfer"]["message"]
    assert seen["site"][0] == 403
    with target.database.session() as session:
        assert _node_names(session) == ["HIDDEN", "OUT", "PACS"]
    assert target.radiology() == {"explorer"}
    assert target.jobs() == jobs_before


def _node_names(session: Any) -> list[str]:
    return sorted(spec.name for spec in node_store.list_nodes(session))


def _audit(database: Database) -> list[tuple[Any, ...]]:
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(r.id, r.at, r.user_name, r.action, r.node, r.outcome, r.details) for r in rows]


def test_the_audit_log_cannot_be_disabled_or_edited(target: Target) -> None:
    before = _audit(target.database)
    assert before, "the seeding and alice's sign-in left audit rows"
    first = before[0][0]
    seen = target.run(
        "out = {}\n"
        "for method in ('DELETE', 'PATCH', 'PUT', 'POST'):\n"
        "    for path in ('api/admin/audit', f'api/admin/audit/{" + str(first) + "}'):\n"
        "        out[f'{method} {path}'] = api(method, path, json={'outcome': 'ok'})\n"
        "out['GET api/admin/audit'] = api('GET', 'api/admin/audit')\n"
        "out['GET api/admin/audit/events'] = api('GET', 'api/admin/audit/events')\n"
        "paths = api('GET', 'openapi.json')[1]['paths']\n"
        "out['routes'] = {p: sorted(m) for p, m in paths.items() if 'audit' in p}\n"
        "report(out)"
    )
    routes = seen.pop("routes")
    assert routes == {  # read-only, admins
        "/services/workbench/api/admin/audit": ["get"],
        "/services/workbench/api/admin/audit/events": ["get"],
    }
    assert seen.pop("GET api/admin/audit")[0] == 403
    assert seen.pop("GET api/admin/audit/events")[0] == 403
    for call, (status, body) in seen.items():
        assert status in (404, 405), (call, status, body)
        assert body["error"] in ("NotFound", "MethodNotAllowed"), body
    after = _audit(target.database)
    assert after[: len(before)] == before  # nothing deleted, nothing changed
    new = after[len(before) :]
    assert new and all(r[2] == target.alice and r[5] == "denied" for r in new), new


def test_node_listing_gives_no_credentials_and_made_up_specs_go_nowhere(target: Target) -> None:
    seen = target.run(
        "import adit_workbench as aw\n"
        "wb = aw.connect()\n"
        f"hidden = {HIDDEN!r}\n"
        "out = {'specs': [repr(s) for s in wb.node_specs()], 'list': api('GET', 'api/nodes')}\n"
        "out['show'] = {n: api('GET', f'api/nodes/{n}') for n in ('PACS', 'OUT', 'HIDDEN')}\n"
        "out['node'] = failure(lambda: wb.node('HIDDEN'))\n"
        "spec = {'name': 'MINE', 'kind': 'server', 'ae_title': hidden['ae'],\n"
        "        'host': hidden['host'], 'port': hidden['port']}\n"
        "out['add'] = api('POST', 'api/nodes', json=spec)\n"
        "out['use'] = {p: api('POST', p, json={'level': 'study', 'filters': {}})\n"
        "              for p in ('api/nodes/MINE/query', 'api/nodes/HIDDEN/query',\n"
        "                        'api/nodes/HIDDEN/echo', 'api/nodes/MINE/echo')}\n"
        "out['same_name'] = api('POST', 'api/nodes', json={**spec, 'name': 'PACS'})\n"
        "out['my_me'] = api('GET', 'api/me')[1]\n"
        "report(out)"
    )
    assert [n["name"] for n in seen["list"][1]] == ["OUT", "PACS"]
    assert seen["show"]["HIDDEN"][0] == 404 and seen["show"]["PACS"][0] == 200
    assert seen["node"].startswith(("NotFound", "NodeAccessDenied")), seen["node"]
    assert seen["add"][0] == 403 and seen["same_name"][0] == 403
    for path, (status, body) in seen["use"].items():
        assert status == 404, (path, status, body)
    assert seen["my_me"]["nodes"] == {"OUT": ["destination"], "PACS": ["source"]}
    everything = json.dumps(seen)
    for secret in (HIDDEN["ae"], HIDDEN["host"], str(HIDDEN["port"]), PACS_AUTH,
                   "pacs-dicomweb-credential", str(target.out_dir)):  # fmt: skip
        assert secret not in everything, secret
    with target.database.session() as session:
        assert _node_names(session) == ["HIDDEN", "OUT", "PACS"]


def test_another_users_job_is_invisible_through_every_route(target: Target) -> None:
    before = target.jobs()
    job = target.bob_job
    seen = target.run(
        "import adit_workbench as aw\n"
        "wb = aw.connect()\n"
        f"job = {job}\n"
        "out = {'mine': [j.id for j in wb.jobs.list()], 'get': failure(lambda: wb.jobs.get(job))}\n"
        "reads = ['', '/progress', '/tasks', '/results', '/results?format=csv',\n"
        "         '/results?format=xlsx', '/leak-scan']\n"
        "out['read'] = {r: api('GET', f'api/jobs/{job}{r}') for r in reads}\n"
        "acts = ['cancel', 'resume', 'retry', 'restart', 'verify', 'urgent', 'requeue']\n"
        "out['act'] = {a: api('POST', f'api/jobs/{job}/{a}') for a in acts}\n"
        "out['delete'] = api('DELETE', f'api/jobs/{job}')\n"
        "out['all'] = api('GET', 'api/jobs?all_users=true')\n"
        "report(out)"
    )
    assert job not in seen["mine"]
    assert seen["get"].startswith(("NotFound", "PermissionDenied")), seen["get"]
    for call, (status, body) in {**seen["read"], **seen["act"], "delete": seen["delete"]}.items():
        assert status in (403, 404), (call, status, body)
    assert seen["all"][0] == 403 or seen["all"][1] == [], seen["all"]
    everything = json.dumps(seen)
    for secret in (BOB_PATIENT, BOB_PSEUDONYM, "bob-zip-pw", "1.2.826.0.1.3680043.99.5"):
        assert secret not in everything, secret
    assert target.jobs() == before


def test_a_foreign_job_cannot_be_enqueued_on_redis(target: Target) -> None:
    url = make_url(target.redis_url)
    marker = f"attack-{os.getpid()}"
    seen = target.run(
        "import socket\n"
        "from redis import Redis\n"
        "from rq import Queue\n"
        f"port, marker = {url.port}, {marker!r}\n"
        "def raw(command):\n"
        "    with socket.create_connection(('127.0.0.1', port), timeout=5) as sock:\n"
        "        sock.sendall(command)\n"
        "        return sock.recv(200).decode(errors='replace')\n"
        "out = {'ping': raw(b'PING\\r\\n'), 'set': raw(f'SET {marker} 1\\r\\n'.encode()),\n"
        "       'keys': raw(b'KEYS *\\r\\n'), 'config': raw(b'CONFIG GET requirepass\\r\\n')}\n"
        "out['auth'] = raw(b'AUTH default wb-test-pw\\r\\n')\n"
        "q = Queue('default', connection=Redis(port=port))\n"
        "out['enqueue'] = failure(lambda: q.enqueue(os.system, f'touch /tmp/{marker}'))\n"
        "report(out)"
    )
    for name in ("ping", "set", "keys", "config"):
        assert seen[name].startswith("-NOAUTH"), (name, seen[name])
    assert seen["auth"].startswith("-WRONGPASS"), seen["auth"]
    assert seen["enqueue"].startswith("AuthenticationError"), seen["enqueue"]
    trusted = Redis.from_url(target.redis_url)
    assert trusted.exists(marker) == 0
    assert not any(marker.encode() in (trusted.dump(k) or b"") for k in trusted.keys("rq:job:*"))
    assert not Path(f"/tmp/{marker}").exists()


# The command as alice's kernel would run it; ``embedded`` tells whether it made (or
# used) alice's own embedded database, the CLI's mode when it ignores the service.
_CLI = """\
from adit_workbench.config import Settings
embedded = Settings().data_dir / "workbench.sqlite3"
cmd = [sys.executable, "-m", "adit_workbench", *{args!r}]
env = {{**os.environ, **{env!r}}}
done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                      cwd=os.path.expanduser("~"))
report({{"rc": done.returncode, "out": done.stdout, "err": done.stderr,
        "embedded": embedded.exists()}})
"""


def _one_clear_line(done: dict[str, Any]) -> str:
    lines = [line for line in done["err"].splitlines() if line.strip()]
    assert done["rc"] != 0, done
    assert "Traceback" not in done["err"] + done["out"], done
    assert len(lines) == 1, done
    return str(lines[0])


def test_user_root_cannot_grant_through_the_cli(target: Target) -> None:
    pg = f"127.0.0.1:{target.pg_port}/{target.pg_database}"
    guessed = f"postgresql+psycopg://workbench:{OLD_PASSWORD}@{pg}"
    tries = {
        "as root": {"USER": "root", "LOGNAME": "root"},
        "as root, guessed URL": {
            "USER": "root",
            "LOGNAME": "root",
            "ADIT_WB_DATABASE_URL": guessed,
        },
    }
    runs = {}
    for why, env in tries.items():
        args = ["access", "perm", "add", "radiology", "admin"]
        runs[why] = target.run(_CLI.format(args=args, env=env))
        # Whatever the CLI's mode: nothing granted where the service looks, nobody "root".
        assert target.radiology() == {"explorer"}, (why, runs[why])
    with target.database.session() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.user_name == "root")).all() == []
    guessed_run = runs["as root, guessed URL"]
    line = _one_clear_line(guessed_run)  # a refused connection, or the service's refusal
    assert OLD_PASSWORD not in line, line
    # The CLI in a hub server is a client of the service: the service refuses alice,
    # whatever $USER says, and no private database appears for it to write instead.
    done = runs["as root"]
    line = _one_clear_line(done)
    assert "admin" in line and not done["embedded"], done


def test_the_cli_transfer_without_permission_delivers_nothing(target: Target) -> None:
    before = target.jobs()
    args = ["transfer", "--from", "PACS", "--to", "OUT", "--study", "1.2.826.0.1.3680043.99.5"]
    done = target.run(_CLI.format(args=args, env={}))
    line = _one_clear_line(done)
    assert "selective_transfer" in line, line  # the service's refusal, naming the permission
    assert target.jobs() == before
    assert not target.out_dir.exists() or not any(target.out_dir.rglob("*"))
