"""The query layer against an in-memory node: routes, merging, re-filter, limits, batches.

The fake answers C-FIND-like requests from synthetic instances with plain DICOM matching
and can be told to ignore keys (as some PACS do), to fail, or to be slow, so each rule of
the query layer is checked without a network. Real servers are in test_query_servers.py.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from pydicom import Dataset

from adit_workbench.dicom.filters import Level, wildcard_match
from adit_workbench.dicom.query import (
    ResultsTruncated,
    find_instances,
    find_patients,
    find_series,
    find_studies,
    iter_studies,
    run_many,
)
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.errors import InputError, NodeUnreachable, NotSupported
from adit_workbench.sandbox.synthetic import iter_datasets

_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
         "IMAGE": "SOPInstanceUID"}  # fmt: skip


def _value_matches(keyword: str, wanted: str, value: Any) -> bool:
    if keyword == "ModalitiesInStudy":
        return wanted in value
    text = str(value)
    if keyword.endswith("Date") and "-" in wanted:
        start, end = wanted.split("-")
        return (not start or text >= start) and (not end or text <= end)
    if keyword.endswith("UID"):
        return text in wanted.split("\\")
    return (
        wildcard_match(wanted, text)
        if keyword == "PatientName"
        else (wildcard_match(wanted, text) and (("*" in wanted or "?" in wanted) or text == wanted))
    )


class FakeNode:
    """A node answering from memory, counting calls and concurrent finds."""

    def __init__(
        self,
        datasets: list[Dataset],
        *,
        capabilities: Capabilities | None = None,
        max_search_results: int = 1000,
        max_associations: int = 2,
        ignore: frozenset[str] = frozenset(),
        delay: float = 0.0,
        fail: Exception | None = None,
    ) -> None:
        self.spec = ServerSpec(
            name="FAKE",
            ae_title="FAKE",
            host="127.0.0.1",
            port=1,
            capabilities=capabilities or Capabilities(),
            max_search_results=max_search_results,
            max_associations=max_associations,
        )
        self.datasets = datasets
        self.ignore = ignore
        self.delay = delay
        self.fail = fail
        self.calls: list[tuple[str, str | None, Dataset, int | None]] = []
        self.active = 0
        self.peak = 0
        self.closed = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "FAKE"

    def _records(self, level: str) -> list[Dataset]:
        groups: dict[str, list[Dataset]] = defaultdict(list)
        for ds in self.datasets:
            groups[str(ds.get(_KEYS[level]))].append(ds)
        out = []
        for members in groups.values():
            rec = Dataset()
            rec.update(members[0])
            rec.ModalitiesInStudy = sorted({m.Modality for m in members})
            rec.NumberOfStudyRelatedInstances = len(members)
            rec.NumberOfStudyRelatedSeries = len({m.SeriesInstanceUID for m in members})
            rec.NumberOfSeriesRelatedInstances = len(members)
            rec.NumberOfPatientRelatedStudies = len({m.StudyInstanceUID for m in members})
            out.append(rec)
        return out

    def find(
        self, level: str, query: Dataset, *, limit: int | None = None, root: str | None = None
    ) -> Iterator[Dataset]:
        self.calls.append((level, root, query, limit))
        if self.fail:
            raise self.fail
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            sent = 0
            for rec in self._records(level):
                if not all(
                    _value_matches(e.keyword, str(e.value), rec.get(e.keyword, ""))
                    for e in query
                    if e.keyword != "QueryRetrieveLevel"
                    and e.keyword not in self.ignore
                    and e.value not in ("", None)
                ):
                    continue
                if limit is not None and sent >= limit:
                    return
                answer = Dataset()
                for e in query:
                    setattr(answer, e.keyword, rec.get(e.keyword, ""))
                sent += 1
                yield answer
        finally:
            self.closed += 1
            with self._lock:
                self.active -= 1


@pytest.fixture(scope="module")
def archive() -> list[Dataset]:
    return list(
        iter_datasets(
            patients=6, studies=2, series=2, instances=2, rows=8, cols=8, modality="mixed"
        )
    )


@pytest.fixture
def node(archive: list[Dataset]) -> FakeNode:
    return FakeNode(archive)


def test_find_studies_by_patient_id(node: FakeNode) -> None:
    hits = find_studies(node, patient_id="SYN0002")
    assert len(hits) == 2 and not hits.truncated
    assert {s.patient_id for s in hits} == {"SYN0002"}
    study = hits[0]
    assert study.modalities in (("CT",), ("MR",))
    assert isinstance(study.study_date, date) and study.instance_count == 4
    assert list(hits.df["PatientID"]) == ["SYN0002", "SYN0002"]
    assert node.calls[0][:2] == ("STUDY", "study")


def test_name_comma_form_and_case(node: FakeNode) -> None:
    hits = find_patients(node, patient_name="smith, j")
    assert [p.patient_name for p in hits] == ["SMITH^JOHN"]


def test_date_ranges_closed_and_open(node: FakeNode, archive: list[Dataset]) -> None:
    dates = sorted({ds.StudyDate for ds in archive})
    middle = dates[len(dates) // 2]
    before = find_studies(node, study_date=(None, middle))
    after = find_studies(
        node, study_date=(date(int(middle[:4]), int(middle[4:6]), int(middle[6:])), "")
    )
    closed = find_studies(node, study_date=(middle, middle))
    total = len({ds.StudyInstanceUID for ds in archive})
    assert len(before) + len(after) - len(closed) == total
    assert all(s.study_date and s.study_date.strftime("%Y%m%d") <= middle for s in before)


def test_several_modalities_one_query_each_merged_without_duplicates(
    archive: list[Dataset],
) -> None:
    # Give one study a second modality so that both queries find it.
    mixed = [ds.copy() for ds in archive]
    target = mixed[0].StudyInstanceUID
    for ds in mixed:
        if ds.StudyInstanceUID == target and ds.SeriesNumber == 2:
            ds.Modality = "PT"
    node = FakeNode(mixed)
    hits = find_studies(node, modality="PT,CT")
    assert [c[2].ModalitiesInStudy for c in node.calls] == ["PT", "CT"]
    uids = [s.study_uid for s in hits]
    assert len(uids) == len(set(uids)) and target in uids


def test_client_refilter_covers_keys_the_pacs_ignores(archive: list[Dataset]) -> None:
    careless = FakeNode(archive, ignore=frozenset({"PatientSex", "StudyDescription", "Modality"}))
    hits = find_studies(careless, patient_sex="F", study_description="*brain*")
    assert hits and all(s.sex == "F" and "BRAIN" in s.description for s in hits)
    series = find_series(careless, study_uid=hits[0].study_uid, modality="XA")
    assert len(series) == 0


def test_patient_level_is_emulated_without_patient_root(node: FakeNode) -> None:
    patients = find_patients(node, patient_name="*")
    assert len(patients) == 6
    assert node.calls[0][0] == "STUDY"  # study root only: asked at study level, grouped
    assert {p.study_count for p in patients} == {2}  # counted from the study rows
    assert {p.study_count for p in find_patients(node, modality="CT")} == {None}


def test_patient_root_used_when_it_is_all_there_is(archive: list[Dataset]) -> None:
    caps = Capabilities(patient_root_find=True, study_root_find=False)
    node = FakeNode(archive, capabilities=caps)
    assert len(find_patients(node, patient_id="SYN0001")) == 1
    assert node.calls[-1][:2] == ("PATIENT", "patient")
    assert len(find_studies(node, patient_id="SYN0001")) == 2
    assert node.calls[-1][:2] == ("STUDY", "patient")
    # a study filter on a patient query needs study level
    find_patients(node, modality="CT")
    assert node.calls[-1][0] == "STUDY"


def test_qido_route_and_pn_caret(archive: list[Dataset]) -> None:
    node = FakeNode(archive, capabilities=Capabilities(study_root_find=False, qido=True))
    hits = find_studies(node, patient_name="Weber, L")
    assert {s.patient_id for s in hits} == {"SYN0002"}
    _, root, identifier, _ = node.calls[-1]
    assert root == "study" and identifier.PatientName == "Weber*L*"
    assert hits.route == "QIDO-RS"


def test_via_forces_a_route_or_says_it_cannot(node: FakeNode) -> None:
    with pytest.raises(NotSupported, match=r"FAKE: find failed.*QIDO-RS"):
        find_studies(node, via="dicomweb")
    bare = FakeNode([], capabilities=Capabilities(study_root_find=False))
    with pytest.raises(NotSupported, match="C-FIND or QIDO-RS"):
        find_studies(bare)
    with pytest.raises(ValueError):
        find_studies(node, via="carrier-pigeon")


def test_truncation_is_reported_per_call_and_per_node(archive: list[Dataset]) -> None:
    node = FakeNode(archive)
    hits = find_studies(node, limit=3)
    assert len(hits) == 3 and hits.truncated and hits.limit == 3
    assert node.calls[-1][3] == 4  # one more than the limit, to know there is more
    assert "TRUNCATED" in repr(hits) and "TRUNCATED" in hits._repr_html_()
    exact = find_studies(node, limit=12)
    assert len(exact) == 12 and not exact.truncated
    small = FakeNode(archive, max_search_results=5)
    capped = find_studies(small, limit=100)
    assert len(capped) == 5 and capped.truncated and capped.limit == 5
    with pytest.warns(ResultsTruncated, match="FAKE: study query truncated at 5"):
        stream = iter_studies(small)
        assert len(list(stream)) == 5
    assert stream.truncated


def test_truncated_patients_count_distinct_patients(node: FakeNode) -> None:
    hits = find_patients(node, limit=4)
    assert len(hits) == 4 and hits.truncated
    assert len({p.patient_id for p in hits}) == 4


def test_bad_limit_and_filters_are_input_errors(node: FakeNode) -> None:
    with pytest.raises(InputError, match="limit"):
        find_studies(node, limit=0)
    with pytest.raises(InputError, match="'Bogus'"):
        find_studies(node, Bogus="x")
    assert node.calls == []


def test_navigation_down_the_hierarchy(node: FakeNode) -> None:
    patient = find_patients(node, patient_id="SYN0003")[0]
    studies = patient.studies()
    assert len(studies) == 2 and studies[0].node is node
    series = studies[0].series()
    assert len(series) == 2 and {s.study_uid for s in series} == {studies[0].study_uid}
    assert node.calls[-1][2].StudyInstanceUID == studies[0].study_uid
    instances = series[0].instances()
    assert len(instances) == 2 and instances[0].series_uid == series[0].series_uid
    assert find_instances(node, sop_instance_uid=instances[1].sop_instance_uid)[0] == instances[1]


def test_failure_is_an_error_not_zero_rows(archive: list[Dataset]) -> None:
    down = FakeNode(archive, fail=NodeUnreachable("FAKE", "C-FIND", "connection refused"))
    with pytest.raises(NodeUnreachable, match="FAKE: C-FIND failed"):
        find_studies(down, patient_id="SYN0001")


def test_stopping_a_stream_early_releases_the_node(node: FakeNode) -> None:
    stream = iter_studies(node)
    next(stream)
    stream.close()
    assert node.closed == 1 and node.active == 0


def test_run_many_bounded_by_max_associations(archive: list[Dataset]) -> None:
    node = FakeNode(archive, delay=0.02, max_associations=3)
    ids = [f"SYN{n:04d}" for n in range(1, 7)] * 3
    results = run_many(node, [{"patient_id": pid} for pid in ids], max_workers=10)
    assert [r[0].patient_id for r in results] == ids  # type: ignore[index]
    assert 1 < node.peak <= 3


def test_run_many_returns_or_raises_errors(archive: list[Dataset]) -> None:
    node = FakeNode(archive)
    out = run_many(node, [{"patient_id": "SYN0001"}, {"Bogus": 1}], return_exceptions=True)
    assert len(out[0]) == 2 and isinstance(out[1], InputError)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        run_many(node, [{"Bogus": 1}])


def test_levels_are_checked(node: FakeNode) -> None:
    with pytest.raises(InputError, match="series level"):
        find_studies(node, series_number=2)
    assert find_series(node, series_number=[1], patient_id="SYN0001").level is Level.SERIES
