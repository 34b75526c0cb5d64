"""C-GET of a study with more storage SOP classes than one association can propose.

A real pynetdicom Q/R SCP holds a study of 140 instances, each of its own private
storage class, in two series: more than the 127 storage contexts an A-ASSOCIATE-RQ has
room for. The workbench must fetch all of them over several associations, each within
128 presentation contexts, instead of failing the instances whose class did not fit.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from adit_workbench.config import Settings
from adit_workbench.dicom import scu
from adit_workbench.dicom.association import QR_MODELS, VERIFICATION
from adit_workbench.dicom.dimse import DimseNode
from adit_workbench.dicom.spec import ServerSpec
from tests.servers._util import free_port

GET_MODEL = QR_MODELS["study", "get"]
FIND_MODEL = QR_MODELS["study", "find"]
ROOT = "1.2.826.0.1.3680043.8.498.77"
STUDY = f"{ROOT}.1"
CLASSES = [f"{ROOT}.9.{n}" for n in range(1, 141)]  # private storage classes


def _instances() -> list[Dataset]:
    found = []
    for n, sop_class in enumerate(CLASSES, 1):
        ds = Dataset()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = f"{ROOT}.3.{n}"
        ds.StudyInstanceUID = STUDY
        ds.SeriesInstanceUID = f"{ROOT}.2.{n % 2 + 1}"
        ds.PatientID = "SPLIT-01"
        ds.Modality = "OT"
        ds.ContentLabel = f"INSTANCE{n}"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        found.append(ds)
    return found


class QrScp:
    """C-FIND (study and image level) and C-GET of :func:`_instances`; records what
    each association proposed and each C-GET asked for."""

    def __init__(self) -> None:
        self.instances = {str(ds.SOPInstanceUID): ds for ds in _instances()}
        self.port = free_port()
        self.proposed: list[int] = []  # presentation contexts per association
        self.gets: list[int] = []  # instances named per C-GET
        ae = AE(ae_title="SPLITSCP")
        ae.add_supported_context(VERIFICATION)
        ae.add_supported_context(FIND_MODEL)
        ae.add_supported_context(GET_MODEL)
        syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        for sop_class in CLASSES:
            ae.add_supported_context(sop_class, syntaxes, scu_role=False, scp_role=True)
        handlers = [
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_GET, self._get),
            (evt.EVT_REQUESTED, self._requested),
        ]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def _requested(self, event: Any) -> None:
        self.proposed.append(len(event.assoc.requestor.requested_contexts))

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        query = event.identifier
        if query.QueryRetrieveLevel == "STUDY":
            match = Dataset()
            match.StudyInstanceUID = STUDY
            match.SOPClassesInStudy = CLASSES
            match.QueryRetrieveLevel = "STUDY"
            yield 0xFF00, match
        else:
            for ds in self.instances.values():
                match = Dataset()
                match.StudyInstanceUID = STUDY
                match.SeriesInstanceUID = ds.SeriesInstanceUID
                match.SOPInstanceUID = ds.SOPInstanceUID
                match.SOPClassUID = ds.SOPClassUID
                match.QueryRetrieveLevel = "IMAGE"
                yield 0xFF00, match
        yield 0x0000, None

    def _get(self, event: Any) -> Iterator[Any]:
        query = event.identifier
        if query.QueryRetrieveLevel == "IMAGE":
            named = query.SOPInstanceUID
            uids = [named] if isinstance(named, str) else list(named)
            chosen = [self.instances[uid] for uid in uids]
            assert all(ds.SeriesInstanceUID == query.SeriesInstanceUID for ds in chosen)
        else:
            chosen = list(self.instances.values())
        self.gets.append(len(chosen))
        yield len(chosen)
        for ds in chosen:
            yield 0xFF00, ds


@pytest.fixture
def qr_scp() -> Iterator[QrScp]:
    scp = QrScp()
    yield scp
    scp.server.shutdown()


def test_a_study_with_more_classes_than_contexts_comes_over_several_associations(
    qr_scp: QrScp, node_settings: Settings
) -> None:
    spec = ServerSpec(name="SPLIT", ae_title="SPLITSCP", host="127.0.0.1", port=qr_scp.port)
    query = Dataset()
    query.StudyInstanceUID = STUDY
    items: list[bytes] = []
    with DimseNode(spec, node_settings) as node:
        stream = node.get_stream("STUDY", query)
        while True:
            try:
                items.append(next(stream))
            except StopIteration as stop:
                result = stop.value
                break
    received = {str(ds.SOPInstanceUID): ds for ds in (dcmread(io.BytesIO(d)) for d in items)}
    assert set(received) == set(qr_scp.instances)  # every instance, none twice
    assert len(items) == len(CLASSES)
    for uid, ds in received.items():
        assert ds.SOPClassUID == qr_scp.instances[uid].SOPClassUID
        assert ds.ContentLabel == qr_scp.instances[uid].ContentLabel
    assert (result.status, result.completed, result.failed) == (0, len(CLASSES), 0)
    # Split: more than one C-GET association, none above 128 contexts, and the C-GETs
    # together named each instance once.
    get_associations = [n for n in qr_scp.proposed if n > 1]
    assert len(get_associations) >= 2
    assert max(qr_scp.proposed) <= 128
    assert sum(qr_scp.gets) == len(CLASSES)
    assert len(CLASSES) > scu.MAX_STORAGE_CLASSES  # the premise: they cannot fit in one
