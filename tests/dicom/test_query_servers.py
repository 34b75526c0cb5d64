"""The same queries against real servers: Orthanc by C-FIND and by QIDO-RS, and the sandbox.

One Orthanc and one sandbox PACS are started for this module and loaded with the same
synthetic archive; every query's expected answer is computed from the archive itself, and
each route must return exactly it, with the same rows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset

from adit_workbench.config import Settings
from adit_workbench.dicom.node import open_node
from adit_workbench.dicom.query import ResultsTruncated, find, find_studies, iter_studies, run_many
from adit_workbench.dicom.spec import Capabilities, ServerSpec
from adit_workbench.errors import NodeError, NodeUnreachable, NotSupported
from adit_workbench.sandbox.pacs import SandboxPacs
from adit_workbench.sandbox.synthetic import iter_datasets
from tests.servers._util import free_port, require
from tests.servers.orthanc import DICOMWEB_PLUGIN, INSTALL_HINT, ORTHANC_BIN, OrthancServer

pytestmark = [pytest.mark.orthanc, pytest.mark.slow]

ARCHIVE = {"patients": 8, "studies": 2, "series": 2, "instances": 2, "rows": 8, "cols": 8,
           "modality": "mixed", "seed": 0}  # fmt: skip
DIMSE = Capabilities(study_root_find=True, patient_root_find=True)


@pytest.fixture(scope="module")
def archive() -> list[Dataset]:
    return list(iter_datasets(**ARCHIVE))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    with tempfile.TemporaryDirectory(prefix="wb-query-") as tmp:
        yield Settings(data_dir=Path(tmp), connect_timeout=3, dimse_timeout=10)


@pytest.fixture(scope="module")
def _orthancs(archive: list[Dataset]) -> Iterator[dict[str, OrthancServer]]:
    """QUERYTEST holding the archive, and REFUSING, which answers no C-FIND."""
    require(ORTHANC_BIN, INSTALL_HINT)
    # require() wants an executable; the plugin is a plain shared object.
    if not Path(DICOMWEB_PLUGIN).is_file():
        require(DICOMWEB_PLUGIN, INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="wb-query-orthanc-") as tmp:
        servers = {
            "main": OrthancServer("QUERYTEST", Path(tmp)),
            "refusing": OrthancServer(
                "REFUSING", Path(tmp), overrides={"DicomAlwaysAllowFind": False}
            ),
        }
        try:
            for server in servers.values():
                server.start()
            servers["main"].upload(archive)
            yield servers
        finally:
            # Orthanc takes seconds to exit: signal both, then wait once.
            for server in servers.values():
                server.terminate()
            for server in servers.values():
                server.wait_stopped()


@pytest.fixture(scope="module")
def orthanc_q(_orthancs: dict[str, OrthancServer]) -> OrthancServer:
    return _orthancs["main"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxPacs]:
    with tempfile.TemporaryDirectory(prefix="wb-query-sandbox-") as tmp:
        pacs = SandboxPacs(Path(tmp), ae_title="QSANDBOX").start()
        options = {k: v for k, v in ARCHIVE.items() if k not in ("patients", "seed")}
        pacs.seed(ARCHIVE["patients"], seed=0, **options)  # type: ignore[arg-type]
        try:
            yield pacs
        finally:
            pacs.stop()


def _orthanc_spec(server: OrthancServer, **changes: Any) -> ServerSpec:
    spec = ServerSpec(
        name="ORTHANC",
        ae_title=server.ae_title,
        host=server.host,
        port=server.dicom_port,
        capabilities=Capabilities(study_root_find=True, patient_root_find=True, qido=True),
        dicomweb_root_url=server.dicomweb_url,
    )
    return spec.replace(**changes)


@pytest.fixture(scope="module")
def routes(
    orthanc_q: OrthancServer, sandbox: SandboxPacs, settings: Settings
) -> Iterator[dict[str, tuple[Any, str]]]:
    """Route name → (node, via)."""
    orthanc = open_node(_orthanc_spec(orthanc_q), settings)
    sandbox_spec = ServerSpec(
        name="SANDBOX", ae_title=sandbox.ae_title, host="127.0.0.1", port=sandbox.port,
        capabilities=DIMSE,
    )  # fmt: skip
    sandbox_node = open_node(sandbox_spec, settings)
    yield {
        "orthanc-cfind": (orthanc, "dimse"),
        "orthanc-qido": (orthanc, "dicomweb"),
        "sandbox-cfind": (sandbox_node, "auto"),
    }
    orthanc.close()
    sandbox_node.close()


def _expect(archive: list[Dataset], key: str, keep: Callable[[Dataset], bool]) -> set[str]:
    return {str(ds[key].value) for ds in archive if keep(ds)}


def _between(day: str, start: str, end: str) -> bool:
    return (not start or day >= start) and (not end or day <= end)


# (level, filters, unique key, predicate over instances); filled with archive values below.
def _cases(archive: list[Dataset]) -> list[tuple[str, str, dict[str, Any], str, Any]]:
    days = sorted({ds.StudyDate for ds in archive})
    lo, hi = days[len(days) // 4], days[3 * len(days) // 4]
    first = archive[0]
    study = first.StudyInstanceUID
    series = first.SeriesInstanceUID
    name = str(first.PatientName)
    last, given = name.split("^")[:2]
    return [
        ("exact id", "study", {"patient_id": "SYN0003"}, "StudyInstanceUID",
         lambda d: d.PatientID == "SYN0003"),
        ("id wildcard", "study", {"patient_id": "SYN000?"}, "StudyInstanceUID",
         lambda d: len(d.PatientID) == 7 and d.PatientID.startswith("SYN000")),
        ("name comma", "study", {"patient_name": f"{last.lower()}, {given[:2]}"},
         "StudyInstanceUID", lambda d: str(d.PatientName).startswith(f"{last}^{given[:2]}")),
        ("name wildcard", "patient", {"patient_name": "*LAURA"}, "PatientID",
         lambda d: str(d.PatientName).endswith("LAURA")),
        ("closed range", "study", {"study_date": (lo, hi)}, "StudyInstanceUID",
         lambda d: _between(d.StudyDate, lo, hi)),
        ("open from", "study", {"study_date": (date(int(hi[:4]), int(hi[4:6]), int(hi[6:])),
                                               None)},
         "StudyInstanceUID", lambda d: _between(d.StudyDate, hi, "")),
        ("open until", "study", {"study_date": ("", lo)}, "StudyInstanceUID",
         lambda d: _between(d.StudyDate, "", lo)),
        ("modalities", "study", {"modality": ["MR", "CT"], "patient_id": "SYN000*"},
         "StudyInstanceUID", lambda d: True),
        ("one modality", "study", {"modality": "MR"}, "StudyInstanceUID",
         lambda d: d.Modality == "MR"),
        ("accession", "study", {"accession_number": first.AccessionNumber}, "StudyInstanceUID",
         lambda d: d.AccessionNumber == first.AccessionNumber),
        ("birth date", "patient", {"birth_date": first.PatientBirthDate}, "PatientID",
         lambda d: d.PatientBirthDate == first.PatientBirthDate),
        ("series of study", "series", {"study_uid": study}, "SeriesInstanceUID",
         lambda d: d.StudyInstanceUID == study),
        ("series modality", "series", {"study_uid": study, "modality": first.Modality},
         "SeriesInstanceUID", lambda d: d.StudyInstanceUID == study),
        ("series number", "series", {"study_uid": study, "series_number": 2},
         "SeriesInstanceUID", lambda d: d.StudyInstanceUID == study and d.SeriesNumber == 2),
        ("instances", "instance", {"study_uid": study, "series_uid": series}, "SOPInstanceUID",
         lambda d: d.SeriesInstanceUID == series),
    ]  # fmt: skip


CASE_IDS = [
    "exact id", "id wildcard", "name comma", "name wildcard", "closed range", "open from",
    "open until", "modalities", "one modality", "accession", "birth date", "series of study",
    "series modality", "series number", "instances",
]  # fmt: skip

# Columns every route fills; counts depend on what a server computes and are left out.
_SAME = {
    "patient": ["PatientID", "PatientName", "PatientBirthDate", "PatientSex"],
    "study": ["StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "StudyDate",
              "AccessionNumber", "StudyDescription"],
    "series": ["SeriesInstanceUID", "StudyInstanceUID", "Modality", "SeriesNumber",
               "SeriesDescription"],
    "instance": ["SOPInstanceUID", "SeriesInstanceUID", "SOPClassUID", "InstanceNumber"],
}  # fmt: skip


@pytest.mark.parametrize("case", CASE_IDS)
def test_same_rows_on_every_route(
    case: str, archive: list[Dataset], routes: dict[str, tuple[Any, str]]
) -> None:
    (_, level, filters, key, keep) = next(c for c in _cases(archive) if c[0] == case)
    expected = _expect(archive, key, keep)
    assert expected, "the case must select something"
    tables = {}
    for route, (node, via) in routes.items():
        results = find(node, level, via=via, **filters)
        assert not results.truncated
        frame = results.df
        assert set(frame[key]) == expected, route
        tables[route] = frame[_SAME[level]].sort_values(key).reset_index(drop=True)
    reference = tables.pop("orthanc-cfind")
    for route, table in tables.items():
        assert table.equals(reference), f"{route} differs from C-FIND:\n{table}\n{reference}"


def test_navigation_on_orthanc(routes: dict[str, tuple[Any, str]]) -> None:
    for node, via in routes.values():
        patient = find(node, "patient", via=via, patient_id="SYN0004")[0]
        study = patient.studies()[0]
        series = study.series()
        assert len(series) == 2 and all(s.study_uid == study.study_uid for s in series)
        assert len(series[0].instances()) == 2


@pytest.mark.parametrize("route", ["orthanc-cfind", "orthanc-qido", "sandbox-cfind"])
def test_truncation_is_reported(route: str, routes: dict[str, tuple[Any, str]]) -> None:
    node, via = routes[route]
    hits = find_studies(node, via=via, limit=5)
    assert len(hits) == 5 and hits.truncated
    with pytest.warns(ResultsTruncated):
        assert len(list(iter_studies(node, via=via, limit=3))) == 3
    assert not find_studies(node, via=via, limit=16).truncated  # exactly all 16 studies


def test_node_limit_caps_every_call(orthanc_q: OrthancServer, settings: Settings) -> None:
    with closing(open_node(_orthanc_spec(orthanc_q, max_search_results=4), settings)) as node:
        for via in ("dimse", "dicomweb"):
            hits = find_studies(node, via=via, limit=100)
            assert len(hits) == 4 and hits.truncated and hits.limit == 4


def test_batch_reuses_bounded_associations(routes: dict[str, tuple[Any, str]]) -> None:
    # Enough back-to-back queries on reused associations to catch pynetdicom's reactor
    # race (dicom.reactor): without the fix a few in every hundred lost a match.
    node, _ = routes["orthanc-cfind"]
    queries = [{"patient_id": f"SYN{n:04d}"} for n in range(1, 9)] * 25
    for workers in (1, 2):
        results = run_many(node, queries, via="dimse", max_workers=workers)
        assert [len(r) for r in results] == [2] * 200  # type: ignore[arg-type]


def test_unreachable_node_is_an_error(settings: Settings) -> None:
    port = free_port()
    spec = ServerSpec(
        name="NOWHERE", ae_title="NOWHERE", host="127.0.0.1", port=port,
        capabilities=Capabilities(study_root_find=True, qido=True),
        dicomweb_root_url=f"http://127.0.0.1:{port}/dicom-web",
    )  # fmt: skip
    with closing(open_node(spec, settings)) as node:
        for via in ("dimse", "dicomweb"):
            with pytest.raises(NodeUnreachable, match="NOWHERE") as info:
                find_studies(node, via=via, patient_id="SYN0001")
            assert "SYN0001" not in str(info.value)


def test_refusing_node_is_an_error(settings: Settings, tmp_path: Path) -> None:
    with SandboxPacs(tmp_path / "strict", ae_title="STRICT", allow_patient_root=False) as pacs:
        spec = ServerSpec(
            name="STRICT", ae_title="STRICT", host="127.0.0.1", port=pacs.port,
            capabilities=Capabilities(study_root_find=False, patient_root_find=True),
        )  # fmt: skip
        with (
            closing(open_node(spec, settings)) as node,
            pytest.raises(NodeError, match="STRICT") as info,
        ):
            find_studies(node, patient_id="SYN0001")
        assert "SYN0001" not in str(info.value)
        with closing(open_node(spec, settings)) as node, pytest.raises(NotSupported, match="QIDO"):
            find_studies(node, via="dicomweb")


def test_orthanc_refusing_find_is_an_error(
    settings: Settings, _orthancs: dict[str, OrthancServer]
) -> None:
    server = _orthancs["refusing"]
    spec = ServerSpec(
        name="REFUSING", ae_title="REFUSING", host="127.0.0.1", port=server.dicom_port,
        capabilities=DIMSE,
    )  # fmt: skip
    with closing(open_node(spec, settings)) as node, pytest.raises(NodeError) as info:
        find_studies(node, patient_id="SYN0001")
    message = str(info.value)
    assert message.startswith("REFUSING: C-FIND failed") and "SYN0001" not in message
