"""Live nodes handed out by the facade check the user's role on every call and audit it."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from adit_workbench.access import Access
from adit_workbench.access.guarded import GuardedNode
from adit_workbench.config import Settings
from adit_workbench.dicom.filters import Level
from adit_workbench.dicom.folder import FolderNode
from adit_workbench.dicom.results import Results, Study
from adit_workbench.dicom.server import DicomServer
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.errors import NodeAccessDenied, NodeUnreachable, PermissionDenied
from adit_workbench.sandbox.synthetic import generate, iter_datasets
from adit_workbench.store import Database
from adit_workbench.workbench import Workbench

from .conftest import HubUser


class FakeNode:
    """Stands in for a DICOM node; records what reached it."""

    name = "PACS"
    capabilities = Capabilities(store=True)
    spec = ServerSpec("PACS", "PACS", "127.0.0.1", 11112)

    def __init__(self) -> None:
        self.calls: list[str] = []

    def echo(self, *, via: str | None = None) -> None:
        self.calls.append("echo")

    def probe(self) -> Capabilities:
        self.calls.append("probe")
        return Capabilities()

    def find(self, level: str, query: Dataset, *, limit: int | None = None,
             root: str | None = None, via: str | None = None) -> Iterator[str]:  # fmt: skip
        self.calls.append("find")
        return iter(["a", "b"])

    def _query(self, method: str, **filters: Any) -> Any:
        self.calls.append(method)
        studies = [
            Study.from_dataset(_study(uid), self) for uid in ("1.2.3.1", "1.2.3.2", "1.2.3.3")
        ]
        if method.startswith("iter_"):
            return iter(studies)
        return Results(studies, Level.STUDY, node_name=self.name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith(("find_", "iter_")) or attr == "run_many":
            return lambda *args, **kwargs: self._query(attr, **kwargs)
        raise AttributeError(attr)

    def retrieve(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        self.calls.append("retrieve")
        return iter([])

    def store(self, items: Iterable[str], *, via: str | None = None) -> str:
        self.calls.append("store")
        if not list(items):  # consumed, as a real node does
            raise NodeUnreachable("PACS", "C-STORE", "refused")
        return "stored"

    def with_capabilities(self, capabilities: Capabilities) -> FakeNode:
        self.calls.append("with_capabilities")
        return self

    def close(self) -> None:
        self.calls.append("close")


def _study(uid: str) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = uid
    ds.PatientID = "P-1001"
    return ds


def test_source_role_queries_and_is_audited(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("radiology", "PACS", source=True)
    fake = FakeNode()
    node = GuardedNode(fake, hub_user("alice", "radiology"))
    query = Dataset()
    query.PatientID = "P-1001"
    query.StudyDate = ""
    assert list(node.find("STUDY", query, limit=5)) == ["a", "b"]
    studies = node.find_studies(patient_id="P-1001", modality="CT")
    assert [s.study_uid for s in studies] == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    assert all(s.node is node for s in studies)  # navigation stays checked
    node.echo()
    assert node.capabilities == Capabilities(store=True)
    with pytest.raises(NodeAccessDenied) as caught:
        node.store(["x"])
    assert caught.value.role == "destination"
    with pytest.raises(PermissionDenied):
        node.probe()
    assert fake.calls == ["find", "find_studies", "echo"]
    rows = admin.admin.audit_events(user="alice")
    queries = [r for r in rows if r.action == "query"]
    assert queries[0].details == {
        "method": "find",
        "keys": {"PatientID": "P-1001"},
        "level": "STUDY",
        "limit": 5,
        "streamed": True,
    }
    assert queries[1].details == {
        "method": "find_studies",
        "filters": {"patient_id": "P-1001", "modality": "CT"},
        "count": 3,
    }
    assert [(r.action, r.outcome) for r in rows if r.action in ("store", "node.probe")] == [
        ("store", "denied"),
        ("node.probe", "denied"),
    ]


def test_destination_role_stores_and_failures_are_audited(admin: Access, hub_user: HubUser) -> None:
    admin.admin.grant("sink", "PACS", destination=True)
    fake = FakeNode()
    node = GuardedNode(fake, hub_user("bob", "sink"))
    assert node.store(["x", "y"]) == "stored"
    with pytest.raises(NodeUnreachable):
        node.store([])
    with pytest.raises(NodeAccessDenied):
        node.find_studies(patient_id="1")
    with pytest.raises(NodeAccessDenied):
        node.retrieve("STUDY", Dataset())
    stores = admin.admin.audit_events(user="bob", action="store")
    assert [(s.outcome, s.details.get("items")) for s in stores] == [("ok", 2), ("failed", None)]
    assert stores[1].details["error"] == "NodeUnreachable"
    [retrieve] = admin.admin.audit_events(user="bob", action="retrieve")
    assert retrieve.outcome == "denied"


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _params(sig: inspect.Signature) -> dict[str, tuple[Any, Any]]:
    return {p.name: (p.kind, p.default) for p in sig.parameters.values()}


def test_every_live_method_is_written_out_with_its_signature() -> None:
    """A method the live nodes gain must be written out (checked) on GuardedNode too."""
    guarded = _public(GuardedNode)
    for live in (DicomServer, FolderNode):
        for name, sig in _public(live).items():
            assert name in guarded, f"GuardedNode lacks {live.__name__}.{name}"
            wanted = _params(sig)
            offered = _params(guarded[name])
            missing = {k: v for k, v in wanted.items() if offered.get(k) != v}
            assert not missing, f"GuardedNode.{name} differs from {live.__name__}: {missing}"
    assert not hasattr(GuardedNode, "__getattr__")


# Calls that need no access check: they describe or release, never reach the server.
_UNCHECKED = {"close", "with_capabilities"}
_ARGS: dict[str, tuple[Any, ...]] = {
    "find": ("STUDY", Dataset()),
    "retrieve": ("STUDY", Dataset()),
    "store": (["x"],),
    "run_many": ([{"patient_id": "1"}],),
    "with_capabilities": (Capabilities(),),
    "unguarded": ("source",),
}


def test_every_public_method_checks_access(admin: Access, hub_user: HubUser) -> None:
    fake = FakeNode()
    node = GuardedNode(fake, hub_user("carol", "nobody"))
    methods = [n for n in _public(GuardedNode) if n not in _UNCHECKED]
    assert {"find_studies", "iter_series", "retrieve", "store", "echo", "probe"} <= set(methods)
    for name in methods:
        with pytest.raises(PermissionDenied):
            getattr(node, name)(*_ARGS.get(name, ()))
    assert fake.calls == []
    denied = {r.details.get("method") or r.action for r in admin.admin.audit_events(user="carol")}
    assert {"find_studies", "iter_series", "run_many", "node.echo"} <= denied
    admin.admin.grant("nobody", "PACS", source=True)
    assert len(node.run_many([{"patient_id": "1"}])) == 3
    stream = node.iter_studies(patient_id="1")
    assert [s.node for s in stream] == [node] * 3
    with node:
        pass
    assert fake.calls[-1] == "close"


def test_facade_hands_out_guarded_nodes(
    settings: Settings, database: Database, admin: Access, hub_user: HubUser, tmp_path: Path
) -> None:
    Workbench(settings, database, admin).add_folder("DROP", tmp_path)
    admin.admin.grant("radiology", "DROP", source=True)
    wb = Workbench(settings, database, hub_user("alice", "radiology"))
    node = wb.node("DROP")
    assert isinstance(node, GuardedNode)
    wb.echo("DROP")
    assert list(node.find("STUDY", Dataset())) == []
    actions = [(e.action, e.node) for e in admin.admin.audit_events(user="alice")]
    assert ("node.echo", "DROP") in actions and ("query", "DROP") in actions


def test_navigation_from_results_is_checked_and_audited(
    settings: Settings, database: Database, admin: Access, hub_user: HubUser, tmp_path: Path
) -> None:
    generate(tmp_path, patients=1, series=2, instances=2, rows=8, cols=8)
    Workbench(settings, database, admin).add_folder("DROP", tmp_path)
    admin.admin.grant("radiology", "DROP", source=True)
    alice = hub_user("alice", "radiology")
    node = Workbench(settings, database, alice).node("DROP")
    [study] = node.find_studies(patient_id="SYN0001")
    assert study.node is node
    series = study.series()
    assert len(series) == 2 and all(s.node is node for s in series)
    assert len(series[0].instances()) == 2
    methods = [
        e.details.get("method") for e in admin.admin.audit_events(user="alice", action="query")
    ]
    assert methods == ["find_studies", "find_series", "find_instances"]
    admin.admin.revoke("radiology", "DROP")
    with pytest.raises(NodeAccessDenied):
        study.series()


def test_completion_signature_and_help_show_the_real_methods(
    settings: Settings, database: Database, admin: Access, tmp_path: Path
) -> None:
    from IPython.core.completer import provisionalcompleter
    from IPython.core.interactiveshell import InteractiveShell

    Workbench(settings, database, admin).add_folder("DROP", tmp_path)
    node = Workbench(settings, database, admin).node("DROP")
    shell = InteractiveShell.instance()
    try:
        shell.user_ns["node"] = node
        with provisionalcompleter():  # the completions JupyterLab asks for (jedi on)
            found = [c.text for c in shell.Completer.completions("node.find_st", 12)]
            assert "find_studies" in found
            everything = {c.text for c in shell.Completer.completions("node.", 5)}
        assert {"iter_series", "retrieve", "echo", "find_instances"} <= everything
    finally:
        InteractiveShell.clear_instance()
    params = inspect.signature(node.find_studies).parameters
    assert list(params) == ["limit", "via", "filters"]
    assert params["limit"].default is None
    assert "study_date" in (node.find_studies.__doc__ or "")
    assert list(inspect.signature(node.retrieve).parameters) == ["level", "query", "root", "via"]


def test_a_real_kernel_completes_and_shows_the_node(tmp_path: Path) -> None:
    """What JupyterLab asks a kernel for: completion, Shift-Tab help, a rich display."""
    import os

    from jupyter_client.manager import start_new_kernel

    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "ADIT_WB_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    for var in ("ADIT_WB_DATABASE_URL", "ADIT_WB_REDIS_URL", "ADIT_WB_SECRET_FILE"):
        env.pop(var, None)
    manager, client = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:

        def run(code: str) -> list[dict[str, Any]]:
            outputs: list[dict[str, Any]] = []
            reply = client.execute_interactive(
                code, timeout=60, output_hook=lambda msg: outputs.append(msg)
            )
            assert reply["content"]["status"] == "ok", reply["content"]
            return [m["content"] for m in outputs if m["msg_type"] in ("stream", "execute_result")]

        run(
            "import inspect, adit_workbench as aw\n"
            f"wb = aw.connect()\nwb.add_folder('DROP', {str(tmp_path)!r})\nnode = wb.node('DROP')"
        )
        client.complete("node.find_st", 12)
        reply = client.get_shell_msg(timeout=30)["content"]
        assert any(m.endswith("find_studies") for m in reply["matches"]), reply
        client.inspect("node.find_studies(", 18, detail_level=0)
        help_text = client.get_shell_msg(timeout=30)["content"]["data"]["text/plain"]
        assert "study_date" in help_text and "limit" in help_text
        [printed] = run("print(inspect.signature(node.find_studies))")
        assert printed["text"].startswith("(*, limit: 'int | None' = None, via: 'str' = 'auto'")
        [shown] = run("node")
        assert {"text/plain", "text/html"} <= set(shown["data"]) and "DROP" in shown["data"][
            "text/html"
        ]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_store_streams_through_the_guard(
    settings: Settings, database: Database, admin: Access, hub_user: HubUser, tmp_path: Path
) -> None:
    Workbench(settings, database, admin).add_folder("SINK", tmp_path)
    admin.admin.grant("writers", "SINK", destination=True)
    node = Workbench(settings, database, hub_user("dora", "writers")).node("SINK")
    produced: list[str] = []

    def stream() -> Iterator[Dataset]:
        for ds in iter_datasets(patients=1, series=1, instances=3, rows=8, cols=8):
            produced.append(str(ds.SOPInstanceUID))
            yield ds

    result = node.store(stream())
    assert result.stored == 3 and len(produced) == 3
    [row] = admin.admin.audit_events(user="dora", action="store")
    assert row.outcome == "ok" and row.details["items"] == 3


def test_transfer_pipeline_gets_the_live_node_only_after_the_role_check(
    settings: Settings, database: Database, admin: Access, hub_user: HubUser, tmp_path: Path
) -> None:
    from adit_workbench.transfer import transfer_study

    source_dir, out_dir = tmp_path / "in", tmp_path / "out"
    [first, *_] = generate(source_dir, patients=1, series=1, instances=2, rows=8, cols=8)
    out_dir.mkdir()
    boss = Workbench(settings, database, admin)
    boss.add_folder("IN", source_dir)
    boss.add_folder("OUT", out_dir)
    admin.admin.grant("movers", "IN", source=True)
    admin.admin.grant("movers", "OUT", source=True)  # may see it, not write to it
    erin = Workbench(settings, database, hub_user("erin", "movers"))
    study_uid = first.parent.parent.name
    with pytest.raises(NodeAccessDenied):
        transfer_study(erin.node("IN"), erin.node("OUT"), study_uid, settings=settings)
    assert not list(out_dir.rglob("*.dcm"))
    admin.admin.grant("movers", "OUT", destination=True)
    transfer_study(erin.node("IN"), erin.node("OUT"), study_uid, settings=settings)
    assert len(list(out_dir.rglob("*.dcm"))) == 2
    opened = sorted((e.id, e.node, e.details["role"], str(e.outcome))
                    for e in admin.admin.audit_events(user="erin", action="node.open"))  # fmt: skip
    assert [o[1:] for o in opened] == [
        ("IN", "source", "ok"),
        ("OUT", "destination", "denied"),
        ("IN", "source", "ok"),
        ("OUT", "destination", "ok"),
    ]
