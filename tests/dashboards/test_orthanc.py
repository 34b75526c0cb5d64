"""The selective transfer dashboard against a real Orthanc (not only the sandbox PACS).

Voilà's kernels read the site's database, so a server registered here shows up in their
source picker. The workbench fetches by C-GET: Orthanc knows the tests' receiver under a
port of its own session, not this site's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adit_workbench.dicom.spec import Capabilities
from adit_workbench.sandbox.synthetic import iter_datasets
from tests.servers.orthanc import OrthancServer
from tests.widgets.site import Site

from .conftest import Voila

pytestmark = pytest.mark.slow

Shot = Callable[[Any, str], Path]
PATIENT = "ORT0001"  # 2 studies (CT, MR) x 2 series x 3 instances


@pytest.fixture(scope="module")
def orthanc_source(site: Site, orthanc_pair: tuple[OrthancServer, OrthancServer]) -> OrthancServer:
    server = orthanc_pair[0]
    server.clear()
    server.upload(iter_datasets(patients=1, studies=2, series=2, instances=3,
                                modality="mixed", pid_prefix="ORT", seed=15))  # fmt: skip
    site.wb.add_server(
        server.name, ae_title=server.ae_title, host=server.host, port=server.dicom_port,
        capabilities=Capabilities(study_root_get=True),
    )  # fmt: skip
    return server


def test_orthanc_search_select_series_transfer(
    page: Any, voila: Voila, site: Site, orthanc_source: OrthancServer, shot: Shot
) -> None:
    page.goto(voila.page_url("selective_transfer"))
    page.locator(".aw-selective-transfer").wait_for(state="visible")
    page.locator(".aw-source-picker select").select_option(orthanc_source.name)
    page.locator(".aw-destination-picker select").select_option("OUT")
    page.locator(".aw-field-patient_id input").fill(PATIENT)
    page.locator("button.aw-search").click()
    page.locator(".aw-count", has_text="2 studies found").wait_for()
    studies = page.locator(".aw-results:not(.aw-series-results) .aw-row")
    assert studies.count() == 2
    studies.first.locator(".aw-row-check input").check()
    page.locator("button.aw-choose-series").click()
    page.locator(".aw-count", has_text="2 series of 1 studies").wait_for()
    series = page.locator(".aw-series-results .aw-row")
    assert series.count() == 2
    series.first.locator(".aw-row-check input").check()
    page.locator(".aw-field-pseudonym input").fill("ORTHANC01")
    page.locator("button.aw-transfer").click()
    page.locator(".aw-job", has_text="SUCCESS").wait_for(timeout=120_000)
    assert "3/3 instances" in page.locator(".aw-job").inner_text()
    shot(page, "selective_transfer_orthanc")
    delivered = [p for p in site.out.rglob("*") if p.is_file() and "ORTHANC01" in str(p)]
    assert len(delivered) == 3  # the one ticked series of the study, not the other
    assert not any(PATIENT in str(p) for p in delivered)  # pseudonymized on the way
    job = site.wb.jobs.list(limit=1)[0]
    assert job.summary()["source"] == orthanc_source.name
