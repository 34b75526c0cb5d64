"""Fixtures of the pseudonymization tests: a secret, a synthetic PHI-rich corpus, bundled files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from adit_workbench.deid import Profile, Pseudonymizer
from adit_workbench.sandbox.synthetic import generate

SECRET = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
OTHER_SECRET = bytes(reversed(SECRET))


@pytest.fixture(scope="session")
def secret() -> bytes:
    return SECRET


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 patients × 2 studies (CT then MR) × 1 series × 2 instances, 32×32: 12 files."""
    root = tmp_path_factory.mktemp("corpus")
    generate(root, patients=3, studies=2, series=1, instances=2, rows=32, cols=32, modality="mixed")
    return root


@pytest.fixture(scope="session")
def corpus_files(corpus: Path) -> list[Path]:
    return sorted(corpus.rglob("*.dcm"))


def bundled_path(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not bundled")
    return str(path)


@pytest.fixture
def bundled() -> Callable[[str], Dataset]:
    """Read one of pydicom's bundled test files (never downloaded)."""

    def read(name: str) -> Dataset:
        return pydicom.dcmread(bundled_path(name), force=True)

    return read


@pytest.fixture
def pseudonymizer(secret: bytes) -> Pseudonymizer:
    return Pseudonymizer(secret, Profile())
