"""DICOMweb on the service at its edges: transfer syntaxes in WADO-RS Accept headers (the
service sends instances as stored, never transcoded) and the STOW-RS body size cap."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from sqlalchemy import select

from adit_workbench.sandbox.synthetic import iter_datasets
from adit_workbench.store import Database
from adit_workbench.store.access import AuditEvent
from adit_workbench.web.dicomweb_stream import StowTooLarge, capped, spool_multipart
from tests.servers._util import run_coroutine
from tests.servers.orthanc import OrthancServer
from tests.web.conftest import Running
from tests.web.test_dicomweb import (  # noqa: F401  (fixtures)
    NODES,
    _bytes,
    _multipart,
    _receiver,
    client,
    folder_study,
    nodes,
    originals,
    pacs_pair,
    users,
)

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
RETRIEVE = 'multipart/related; type="application/dicom"'


# -- WADO-RS: transfer syntaxes ------------------------------------------------------------
@pytest.mark.parametrize("node", [*NODES, "FOLD"])
def test_wado_sends_as_stored_and_refuses_other_syntaxes(
    service: Running,
    users: dict[str, str],  # noqa: F811
    originals: list[Dataset],  # noqa: F811
    node: str,
) -> None:
    study = str(originals[0].StudyInstanceUID)
    web: DICOMwebClient = client(service, node, users["dora"])
    # transfer-syntax=* : whatever is stored
    got = web.retrieve_study(study, media_types=(("application/dicom", "*"),))
    assert len(got) == len(originals)
    stored = {str(ds.file_meta.TransferSyntaxUID) for ds in got}
    assert len(stored) == 1 and JPEG_BASELINE not in stored
    syntax = stored.pop()
    # the stored syntax by name: the same instances
    named = web.retrieve_study(study, media_types=(("application/dicom", syntax),))
    assert {str(ds.SOPInstanceUID) for ds in named} == {str(ds.SOPInstanceUID) for ds in got}
    # a syntax the service would have to transcode to: 406, through the client ...
    with pytest.raises(requests.HTTPError) as refused:
        web.retrieve_study(study, media_types=(("application/dicom", JPEG_BASELINE),))
    assert refused.value.response.status_code == 406
    # ... and raw, with the reason in the message; no part was sent
    s = requests.Session()
    s.headers["Authorization"] = f"Token {users['dora']}"
    url = f"{service.url}dicom-web/{node}/studies/{study}"
    answer = s.get(url, headers={"Accept": f"{RETRIEVE}; transfer-syntax={JPEG_BASELINE}"},
                   timeout=60)  # fmt: skip
    assert answer.status_code == 406
    assert answer.headers["content-type"].startswith("application/json")
    message = answer.json()["message"]
    assert syntax in message and JPEG_BASELINE in message and "transfer-syntax=*" in message
    # one acceptable item among others is enough; so is an Accept without a syntax
    either = f"{RETRIEVE}; transfer-syntax={JPEG_BASELINE}, {RETRIEVE}; transfer-syntax={syntax}"
    for accept in (either, RETRIEVE, f'{RETRIEVE}; transfer-syntax="*"'):
        ok = s.get(url, headers={"Accept": accept}, timeout=60)
        assert ok.status_code == 200, (accept, ok.text)
        assert ok.content.count(b"Content-Type: application/dicom") == len(originals)
    # a series and a pseudonymized retrieve are checked the same way
    series = str(originals[0].SeriesInstanceUID)
    jpeg = {"Accept": f"{RETRIEVE}; transfer-syntax={JPEG_BASELINE}"}
    assert s.get(f"{url}/series/{series}", headers=jpeg, timeout=60).status_code == 406
    pseudonymized = s.get(url, headers=jpeg, params={"pseudonym": "S-1"}, timeout=60)
    assert pseudonymized.status_code == 406


# -- STOW-RS: the body size cap ------------------------------------------------------------
def _stow(
    service: Running, token: str, node: str, body: object, **headers: str
) -> requests.Response:
    return requests.post(
        f"{service.url}dicom-web/{node}/studies",
        data=body,
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=XyZ',
            **headers,
        },
        timeout=120,
    )


def _sops(server: OrthancServer) -> set[str]:
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in server.rest("GET", "/instances?expand")}


def test_stow_larger_than_the_cap_is_refused_and_nothing_is_stored(
    service: Running,
    users: dict[str, str],  # noqa: F811
    pacs_pair: tuple[OrthancServer, OrthancServer],  # noqa: F811
    database: Database,
) -> None:
    service.settings.max_stow_mb = 1.0
    new = list(iter_datasets(patients=1, series=1, instances=12, rows=256, cols=256, seed=41))
    body = _multipart([("application/dicom", _bytes(ds)) for ds in new])
    assert 1_000_000 < len(body) < 3_000_000
    before = {node: _sops(server) for node, server in zip(NODES, pacs_pair, strict=True)}

    def chunked() -> object:  # no Content-Length: the cap counts while the body streams
        for at in range(0, len(body), 64 * 1024):
            yield body[at : at + 64 * 1024]

    for node in NODES:
        declared = _stow(service, users["dora"], node, body)
        assert declared.status_code == 413, declared.text
        assert "ADIT_WB_MAX_STOW_MB" in declared.json()["message"]
        streamed = _stow(service, users["dora"], node, chunked())
        assert streamed.status_code == 413, streamed.text
    after = {node: _sops(server) for node, server in zip(NODES, pacs_pair, strict=True)}
    assert after == before
    assert not list(service.settings.data_dir.glob("stow-*"))  # the spool is gone
    # under the cap the same node stores
    small = _multipart([("application/dicom", _bytes(new[0]))])
    assert _stow(service, users["dora"], "ORTHANC1", small).status_code == 200
    assert str(new[0].SOPInstanceUID) in _sops(pacs_pair[0])
    with database.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "dicomweb.stow")).all()
        refused = [r for r in rows if (r.details or {}).get("too_large")]
    assert len(refused) == 4 and {r.outcome for r in refused} == {"failed"}


def test_stow_refusals_come_before_the_cap(
    service: Running,
    users: dict[str, str],  # noqa: F811
    originals: list[Dataset],  # noqa: F811
) -> None:
    """A caller who may not store learns nothing from the size of what they send."""
    service.settings.max_stow_mb = 0.001
    body = _multipart([("application/dicom", _bytes(originals[0]))])
    assert _stow(service, users["vic"], "ORTHANC1", body).status_code == 404
    assert _stow(service, users["pia"], "ORTHANC1", body).status_code == 403
    assert _stow(service, users["dora"], "ORTHANC1", body).status_code == 413


async def _generated(total: int, part: int) -> AsyncIterator[bytes]:
    """A multipart body of ``total`` bytes in parts of ``part`` bytes, made on the fly in
    network-sized chunks (never held whole)."""
    chunk = b"\0" * (64 * 1024)
    sent = 0
    while sent < total:
        yield b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n"
        left = min(part, total - sent)
        while left > 0:
            piece = chunk[: min(left, len(chunk))]
            left -= len(piece)
            yield piece
        yield b"\r\n"
        sent += part
    yield b"--XyZ--\r\n"


def test_an_allowed_large_stow_body_is_spooled_in_flat_memory(tmp_path: Path) -> None:
    """200 MB in 20 parts through the cap and the spool: memory holds a chunk or two,
    not a part and not the body."""
    total, part = 200_000_000, 10_000_000

    async def spool(max_bytes: int, folder: Path) -> int:
        folder.mkdir()
        parts = await spool_multipart(capped(_generated(total, part), max_bytes), "XyZ", folder)
        return sum(p.path.stat().st_size for p in parts)

    tracemalloc.start()
    try:
        stored = run_coroutine(spool(400_000_000, tmp_path / "allowed"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stored == total
    assert peak < 5_000_000, peak
    with pytest.raises(StowTooLarge):
        run_coroutine(spool(50_000_000, tmp_path / "refused"))
    written = sum(p.stat().st_size for p in (tmp_path / "refused").iterdir())
    assert written <= 50_000_000
