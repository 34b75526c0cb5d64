"""Sandbox PACS: an embedded Query/Retrieve SCP seeded with synthetic patients.

``SandboxPacs`` runs in-process (tests, notebooks); ``start_background`` runs it as a
detached process for the CLI. ``synthetic`` generates the deterministic, PHI-rich test
archive both use.
"""

from .pacs import SandboxPacs
from .process import (
    SandboxError,
    SandboxStatus,
    set_peers,
    start_background,
    status,
    stop_background,
)
from .synthetic import PRIVATE_CREATOR, generate, iter_datasets, phi_values

__all__ = [
    "PRIVATE_CREATOR",
    "SandboxError",
    "SandboxPacs",
    "SandboxStatus",
    "generate",
    "iter_datasets",
    "phi_values",
    "set_peers",
    "start_background",
    "status",
    "stop_background",
]
