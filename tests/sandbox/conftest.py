"""A seeded sandbox PACS shared by the protocol tests, and a small pynetdicom SCU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import build_context

from adit_workbench.sandbox.pacs import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    SandboxPacs,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
PATIENTS = 3  # x 2 studies (CT, MR) x 2 series x 3 instances = 36 instances


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPacs]:
    root = tmp_path_factory.mktemp("sandbox")
    with SandboxPacs(root, ae_title="SANDBOX") as server:
        server.seed(PATIENTS, seed=0)
        yield server


class Scu:
    """One association per call, as a probing client would do."""

    def __init__(self, pacs: SandboxPacs, ae_title: str = "TESTSCU") -> None:
        self.pacs = pacs
        self.ae_title = ae_title

    def _assoc(self, contexts: list[Any], **kwargs: Any) -> Any:
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        assoc = ae.associate(
            "127.0.0.1", self.pacs.port, ae_title=self.pacs.ae_title, contexts=contexts, **kwargs
        )
        assert assoc.is_established
        return assoc

    def echo(self) -> int:
        assoc = self._assoc([build_context(Verification)])
        try:
            return int(assoc.send_c_echo().Status)
        finally:
            assoc.release()

    def find(self, query: dict[str, Any], *, patient_root: bool = False) -> list[Dataset]:
        model = (
            PatientRootQueryRetrieveInformationModelFind
            if patient_root
            else StudyRootQueryRetrieveInformationModelFind
        )
        found, status = self.find_status(query, model)
        assert status == 0x0000, hex(status)
        return found

    def find_status(self, query: dict[str, Any], model: str) -> tuple[list[Dataset], int]:
        ds = Dataset()
        for keyword, value in query.items():
            setattr(ds, keyword, value)
        assoc = self._assoc([build_context(model)])
        found: list[Dataset] = []
        final = -1
        try:
            for status, ident in assoc.send_c_find(ds, model):
                if status.Status in (0xFF00, 0xFF01):
                    found.append(ident)
                else:
                    final = int(status.Status)
        finally:
            assoc.release()
        return found, final

    def get(
        self, query: dict[str, Any], *, patient_root: bool = False
    ) -> tuple[int, list[Dataset]]:
        model = (
            PatientRootQueryRetrieveInformationModelGet
            if patient_root
            else StudyRootQueryRetrieveInformationModelGet
        )
        received: list[Dataset] = []

        def on_store(event: evt.Event) -> int:
            received.append(event.dataset)
            return 0x0000

        ds = Dataset()
        for keyword, value in query.items():
            setattr(ds, keyword, value)
        assoc = self._assoc(
            [build_context(model), build_context(CT), build_context(MR)],
            ext_neg=[build_role(CT, scp_role=True), build_role(MR, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )
        final = -1
        try:
            for status, _ in assoc.send_c_get(ds, model):
                if status and status.Status not in (0xFF00, 0xFF01):
                    final = int(status.Status)
        finally:
            assoc.release()
        return final, received

    def move(
        self, query: dict[str, Any], destination: str, *, patient_root: bool = False
    ) -> tuple[int, Dataset | None]:
        model = (
            PatientRootQueryRetrieveInformationModelMove
            if patient_root
            else StudyRootQueryRetrieveInformationModelMove
        )
        ds = Dataset()
        for keyword, value in query.items():
            setattr(ds, keyword, value)
        assoc = self._assoc([build_context(model)])
        final, last = -1, None
        try:
            for status, _ in assoc.send_c_move(ds, destination, model):
                if status and status.Status not in (0xFF00, 0xFF01):
                    final, last = int(status.Status), status
        finally:
            assoc.release()
        return final, last


@pytest.fixture
def scu(pacs: SandboxPacs) -> Scu:
    return Scu(pacs)


def store_scp(received: list[Dataset], ae_title: str = "RECEIVER") -> Any:
    """A pynetdicom Store SCP on a free loopback port; returns the server."""
    ae = AE(ae_title=ae_title)
    for sop in (CT, MR):
        ae.add_supported_context(sop)

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    return ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )


def tmp_root(tmp_path: Path) -> Path:
    return tmp_path / "sandbox"
