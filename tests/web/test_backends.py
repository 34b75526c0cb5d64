"""The facade's behaviour, run unchanged on the local workbench and on the remote one.

Every test takes ``wb`` (alice's workbench; params ``local`` and ``remote``, the latter
through the real service on SQLite and on PostgreSQL): the same calls give the same typed
results, the same job handles and the same exception classes.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from adit_workbench.dicom.query import ResultsTruncated
from adit_workbench.dicom.results import Results, Series, Study
from adit_workbench.errors import InputError, NodeAccessDenied, PermissionDenied
from adit_workbench.jobs import BatchFileError, JobStatus
from adit_workbench.remote import RemoteNode


def test_nodes_listed_and_echoed(wb: Any) -> None:
    assert sorted(s.name for s in wb.node_specs()) == ["OUT", "SANDBOX"]
    wb.echo("SANDBOX")
    wb.node("SANDBOX").echo()


def test_unknown_and_forbidden_nodes_raise_the_same_class(wb: Any) -> None:
    for name in ("OTHER", "NO-SUCH-NODE"):
        with pytest.raises(NodeAccessDenied):
            wb.node(name)


def test_find_studies_typed_results_with_navigation(wb: Any) -> None:
    pacs = wb.node("SANDBOX")
    hits = pacs.find_studies(patient_id="SYN0001", study_date=("2000-01-01", None))
    assert isinstance(hits, Results) and len(hits) == 2
    assert all(isinstance(h, Study) for h in hits)
    assert set(hits.df["PatientID"]) == {"SYN0001"}
    assert str(hits.df["StudyDate"].dtype).startswith("datetime64")
    assert "SANDBOX" in hits._repr_html_()
    series = hits[0].series()
    assert len(series) == 2 and all(isinstance(s, Series) for s in series)
    assert len(series[0].instances()) == 3
    ct = pacs.find_studies(patient_id="SYN0001", modality="CT")
    assert [h.modalities for h in ct] == [("CT",)]


def test_every_level_and_streaming(wb: Any) -> None:
    pacs = wb.node("SANDBOX")
    patients = pacs.find_patients(patient_id="SYN*")
    assert sorted(p.patient_id for p in patients) == ["SYN0001", "SYN0002", "SYN0003"]
    study = pacs.find_studies(patient_id="SYN0002", modality="MR")[0]
    assert len(pacs.find_series(study_uid=study.study_uid)) == 2
    assert len(pacs.find_instances(study_uid=study.study_uid)) == 6
    streamed = list(pacs.iter_studies(patient_id="SYN*"))
    assert len(streamed) == 6 and all(isinstance(s, Study) for s in streamed)


def test_truncation_is_reported(wb: Any) -> None:
    pacs = wb.node("SANDBOX")
    hits = pacs.find_studies(patient_id="SYN*", limit=2)
    assert len(hits) == 2 and hits.truncated and "TRUNCATED" in repr(hits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsTruncated)
        stream = pacs.iter_studies(patient_id="SYN*", limit=3)
        assert len(list(stream)) == 3
    assert stream.truncated


def test_bad_filters_raise_input_error(wb: Any) -> None:
    pacs = wb.node("SANDBOX")
    with pytest.raises(InputError, match="unknown query filter"):
        pacs.find_studies(no_such_filter="x")
    with pytest.raises(InputError, match="study_date"):
        pacs.find_studies(study_date="2020-13-45")
    with pytest.raises(InputError, match="series_description"):
        pacs.find_studies(series_description="ARTERIAL")
    with pytest.raises(InputError, match="unknown query filter"):
        pacs.iter_studies(no_such_filter="x")  # at the call, before iterating


def test_transfer_from_query_results_and_batch_query(wb: Any, tmp_path: Path) -> None:
    hits = wb.node("SANDBOX").find_studies(patient_id="SYN0002", modality="MR")
    job = wb.transfer(hits, to="OUT", pseudonym="SUBJ-02").wait(60, progress=False)
    assert job.status is JobStatus.SUCCESS
    assert job.progress.finished == job.progress.total == 1
    assert list(job.tasks["status"]) == ["SUCCESS"]
    out = tmp_path / "out"
    assert len(list(out.rglob("*.dcm"))) == 6
    queries = tmp_path / "q.csv"
    queries.write_text("PatientID,Modality\nSYN0001,CT\n")
    found = wb.batch_query(queries, source="SANDBOX").wait(60, progress=False)
    assert len(found.results.df) == 1
    assert found.results.df["PatientID"].tolist() == ["SYN0001"]
    assert [j.id for j in wb.jobs.list()] == [found.id, job.id]
    assert wb.jobs[job.id].kind == "selective_transfer"
    exported = found.export(tmp_path / "found.csv")
    assert "SYN0001" in exported.read_text()


def test_batch_file_errors_all_reported(wb: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("PatientID,StudyDate\nSYN0001,2020-99-99\n,\nSYN0002,notadate\n")
    before = len(wb.jobs.list())
    with pytest.raises(BatchFileError) as caught:
        wb.batch_query(bad, source="SANDBOX")
    assert len(caught.value.errors) >= 2
    assert len(wb.jobs.list()) == before


def test_unknown_study_refused_at_submit(wb: Any) -> None:
    """The jobs layer checks the source before queueing: same class, nothing queued."""
    before = len(wb.jobs.list())
    with pytest.raises(InputError, match=r"no study 1\.2\.3\.4\.5\.6\.7"):
        wb.transfer(["1.2.3.4.5.6.7"], source="SANDBOX", to="OUT", pseudonym="X")
    assert len(wb.jobs.list()) == before


def test_permission_errors_are_the_same_class(wb_for: Callable[[str], Any]) -> None:
    nina = wb_for("nina")  # node access, no job permission
    hits = nina.node("SANDBOX").find_studies(patient_id="SYN0001")
    with pytest.raises(PermissionDenied, match="selective_transfer"):
        nina.transfer(hits, to="OUT", pseudonym="X")
    olga = wb_for("olga")  # job permissions, no node
    with pytest.raises(NodeAccessDenied):
        olga.transfer(["1.2.3"], source="SANDBOX", to="OUT", pseudonym="X")
    with pytest.raises(PermissionDenied):
        nina.remove_node("OUT")


NOTEBOOK_CELL = textwrap.dedent(
    """
    pacs = wb.node("SANDBOX")
    hits = pacs.find_studies(patient_id="SYN0003", modality="CT")
    job = wb.transfer(hits, to="OUT", pseudonym="NB-00", trial_protocol_id="T1")
    job.wait(120, progress=False)
    summary = (job.status.value, len(hits), hits.df.shape[0])
    """
)


def test_notebook_cell_runs_unchanged(wb: Any, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"wb": wb}
    exec(NOTEBOOK_CELL, namespace)
    assert namespace["summary"] == ("SUCCESS", 1, 1)
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6


def test_node_cap_holds_for_queries_and_raw_finds(
    wb_for: Callable[[str], Any], people: Any, pacs: Any
) -> None:
    boss = wb_for("boss")
    boss.add_server("TINY", ae_title="SANDBOX", host="127.0.0.1", port=pacs.port,
                    max_search_results=2)  # fmt: skip
    people.admin.admin.grant(people.access["alice"].profile().groups[0], "TINY", source=True)
    tiny = wb_for("alice").node("TINY")
    hits = tiny.find_studies(patient_id="SYN*")
    assert len(hits) == 2 and hits.truncated
    if isinstance(tiny, RemoteNode):  # the service caps a raw find too (locally it is raw)
        query = Dataset()
        query.StudyInstanceUID = ""
        assert len(list(tiny.find("STUDY", query))) == 3  # the cap, and one more to tell
