"""Secrets kept in the database, sealed at rest: a job's archive password until a worker
needs it, and a node's DICOMweb ``Authorization`` header.

Rows live in a database that backups, replicas and staff SQL sessions all see, so such a
secret is stored only as a Fernet token (AES-128-CBC + HMAC-SHA256, from the
``cryptography`` package) under a key derived from the master secret, which only the
service and the workers hold, one key per purpose. An archive password is sealed when
the job is stored and unsealed only by the task executor in the worker, right before the
archive is written; a node credential is sealed when the node is stored and unsealed when
its spec is read (by the service or a worker, to open the node).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["JOB_SECRET", "NODE_CREDENTIAL", "PREFIX", "is_sealed", "seal", "unseal"]

#: Marks a sealed value (and its scheme), so that a clear one is never mistaken for it.
PREFIX = "fernet1:"

#: Domain separation: each purpose has its own key (an archive password's key opens no
#: node credential).
JOB_SECRET = b"adit-workbench/sealed-job-secret/v1"
NODE_CREDENTIAL = b"adit-workbench/sealed-node-credential/v1"


def _fernet(settings: Settings, purpose: bytes) -> Fernet:
    key = hmac.new(settings.master_secret(), purpose, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def is_sealed(value: str | None) -> bool:
    """Whether ``value`` is a sealed token (not a clear password)."""
    return bool(value) and str(value).startswith(PREFIX)


def seal(settings: Settings, secret: str, purpose: bytes = JOB_SECRET) -> str:
    """``secret`` encrypted under the master secret's key for ``purpose`` (a new token
    each call)."""
    token = _fernet(settings, purpose).encrypt(secret.encode("utf-8"))
    return PREFIX + token.decode("ascii")


def unseal(settings: Settings, sealed: str, purpose: bytes = JOB_SECRET) -> str:
    """The clear secret of a token made by :func:`seal` (with the same master secret).

    Raises
    ------
    ConfigurationError
        The value is not a sealed token or was sealed under another master secret (the
        message names neither the value nor the secret).
    """
    if not is_sealed(sealed):
        raise ConfigurationError("a stored secret is unsealed; give it again")
    if not settings.secret_path.exists():  # opening must not make up a new master secret
        raise ConfigurationError("a stored secret cannot be opened: no master secret here")
    try:
        clear = _fernet(settings, purpose).decrypt(sealed[len(PREFIX) :].encode("ascii"))
    except (InvalidToken, ValueError):
        raise ConfigurationError(
            "a stored secret cannot be opened: it was sealed under another master secret"
        ) from None
    return clear.decode("utf-8")
