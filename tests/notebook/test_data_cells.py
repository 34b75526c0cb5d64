"""The notebook cells of a researcher's first day, unchanged on both backends: query →
transfer → ``job.wait()`` → ``job.leak_scan()``; pixels and Datasets in one call; and
``wb.pseudonymizer()``, which only the embedded workbench can hand out (the service keeps
the key: a kernel of the service is told how to pseudonymize through it instead)."""

from __future__ import annotations

from collections.abc import Callable

from jupyter_client.manager import KernelManager

from .conftest import Lab, run, stdout, text

QUERY_TRANSFER_WAIT = """
hits = wb.node('SANDBOX').find_studies(patient_id='SYN0001', modality='CT')
job = wb.transfer(hits, to='DATA', pseudonym='D1').wait(300)
report = job.leak_scan()
print(job.status, report.clean, report.files_scanned == hits[0].instance_count)
"""

PIXELS = """
series = hits[0].series()[0]
volume = series.volume()
thumb = series.thumbnail(size=32)
preview = hits[0].preview(size=32)
one = series.instances()[0].dataset(pseudonym='D1')
pseudonymized = {str(ds.PatientID) for ds in series.datasets(pseudonym='D1', project='P')}
print(volume.shape[0] == series.instance_count, thumb.png[:4] == b'\\x89PNG',
      len(preview) == len(hits[0].series()), str(one.PatientID), sorted(pseudonymized))
preview
"""

PSEUDONYMIZER = """
try:
    p = wb.pseudonymizer(project='P')
    print('local', p.pseudonym('SYN0001') != 'SYN0001')
except aw.PermissionDenied as exc:
    print('refused', type(exc).__name__, 'series.datasets' in str(exc))
"""


def test_query_transfer_wait_and_leak_scan_run_unchanged(
    lab: Lab, kernel: Callable[[], KernelManager]
) -> None:
    nb = run(kernel(), lab.setup_code("DATA"), QUERY_TRANSFER_WAIT, PIXELS, PSEUDONYMIZER)
    assert stdout(nb.cells[1]).split() == ["SUCCESS", "True", "True"], text(nb.cells[1])
    assert stdout(nb.cells[2]).split("\n")[0] == "True True True D1 ['D1']", text(nb.cells[2])
    shown = nb.cells[2].outputs[-1].data
    assert "<img " in shown["text/html"]  # the preview as pictures in the saved notebook
    if lab.backend == "embedded":
        assert stdout(nb.cells[3]).split() == ["local", "True"]
    else:
        assert stdout(nb.cells[3]).split() == ["refused", "KeyHeldByService", "True"]
