"""What the benches share about their Orthanc: loading a synthetic study into it."""

from __future__ import annotations

from adit_workbench.sandbox.synthetic import iter_datasets
from tests.servers.orthanc import OrthancServer

__all__ = ["load_study"]

#: Instances per upload request.
BATCH = 50


def load_study(
    server: OrthancServer, *, instances: int, series: int, size: int, seed: int, prefix: str
) -> str:
    """Upload one study of ``instances`` 16-bit CT instances of ``size``² pixels in
    ``series`` series (``instances // series`` each) and return its StudyInstanceUID.
    ``prefix`` starts the PatientID, so that benches sharing an Orthanc do not mix."""
    per_series = max(1, instances // series)
    datasets = iter_datasets(
        patients=1, studies=1, series=series, instances=per_series,
        rows=size, cols=size, modality="CT", seed=seed, pid_prefix=f"{prefix}{seed}",
    )  # fmt: skip
    study = ""
    batch = []
    for ds in datasets:
        study = str(ds.StudyInstanceUID)
        batch.append(ds)
        if len(batch) == BATCH:
            server.upload(batch)
            batch = []
    if batch:
        server.upload(batch)
    return study
