"""The sandbox PACS over the network: crafted instances sent with C-STORE are archived
below its folder by safe names, damaged ones refused with a failure status."""

from __future__ import annotations

from pathlib import Path

from pynetdicom import AE

from adit_workbench.dicom.part10 import read_checked
from adit_workbench.sandbox.pacs import SandboxPacs
from tests.inputs import corpus

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def test_cstore_of_the_corpus(tmp_path: Path) -> None:
    cases = [c for c in corpus.write(tmp_path / "in") if c.kind == "file" and c.data]
    sendable = [c for c in cases if c.expect in ("ok", "refused") and len(c.data) > 200]
    root = tmp_path / "sandbox"
    with SandboxPacs(root, ae_title="SANDBOX") as server:
        ae = AE(ae_title="HOSTILE")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        syntaxes = [
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.2",
        ]
        ae.add_requested_context(CT_IMAGE, syntaxes)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="SANDBOX")
        assert assoc.is_established
        statuses: dict[str, int] = {}
        try:
            for case in sendable:
                try:
                    status = assoc.send_c_store(tmp_path / "in" / case.name)
                except Exception:  # pynetdicom cannot even read some of them
                    statuses[case.name] = -1  # refused by pynetdicom before sending
                    continue
                statuses[case.name] = int(status.Status) if status else -2
        finally:
            if assoc.is_established:
                assoc.release()
        counts = server.count()
    sound = [c.name for c in sendable if c.expect == "ok"]
    # A UID holding a backslash cannot even be encoded by pynetdicom (-1), nor a big
    # endian or a JPEG file sent without that syntax accepted: never sent.
    assert all(statuses[n] in (0, -1) for n in sound), statuses
    assert sum(1 for n in sound if statuses[n] == 0) >= len(sound) - 4, sorted(
        n for n in sound if statuses[n]
    )
    # Damaged files: pynetdicom sends some of them re-encoded (it reads a cut file as
    # pydicom does, silently): those arrive structurally whole. Whatever arrived damaged
    # was refused, and nothing damaged was archived.
    refused = [c.name for c in sendable if c.expect == "refused" and statuses[c.name] != 0]
    assert len(refused) >= 5, statuses
    files = list(corpus.files_below(root / "files"))
    assert len(files) == counts["instances"] >= sum(1 for n in sound if statuses[n] == 0)
    for path in files:
        assert (root / "files").resolve() in path.resolve().parents
        read_checked(path)
