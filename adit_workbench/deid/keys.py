"""Keyed pseudonyms: UIDs, patient pseudonyms and date shifts derived from a secret.

Everything here is HMAC-SHA256 under the project's secret, so the same secret gives the
same output in every file, job and process, and nobody without the secret can confirm a
guessed original (unlike an unsalted hash of the UID). Each use has its own label in the
message so that, say, a UID and a PatientID that happen to be equal map to unrelated values.
"""

from __future__ import annotations

import hmac

from ..errors import InputError

__all__ = [
    "MIN_SECRET_BYTES",
    "check_secret",
    "date_shift",
    "keyed_uid",
    "project_key",
    "pseudonym_for",
]

#: Shortest secret accepted: 128 bits.
MIN_SECRET_BYTES = 16

_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def check_secret(secret: bytes) -> bytes:
    """Return ``secret`` if it is bytes of at least :data:`MIN_SECRET_BYTES`."""
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise InputError(f"the pseudonymization secret must be at least {MIN_SECRET_BYTES} bytes")
    return bytes(secret)


def _mac(secret: bytes, label: bytes, value: str) -> bytes:
    return hmac.digest(secret, label + b"\0" + value.encode("utf-8"), "sha256")


def project_key(master_secret: bytes, project: str) -> bytes:
    """The key of one research project, derived from the master secret and its name.

    Two projects' pseudonyms cannot be linked unless they share a key.
    """
    if not project.strip():
        raise InputError("project name must not be empty")
    return _mac(check_secret(master_secret), b"project", project.strip())


def keyed_uid(secret: bytes, uid: str) -> str:
    """``2.25.`` + the integer of HMAC-SHA256(secret, uid) cut to 128 bits.

    At most 44 characters, within the 64 of a UI value; ``2.25`` is the UUID-derived root
    that needs no registration (PS3.5 B.2).
    """
    digest = hmac.digest(secret, uid.encode("ascii", "replace"), "sha256")
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def pseudonym_for(secret: bytes, patient_id: str, prefix: str = "WB", length: int = 10) -> str:
    """A patient pseudonym: ``prefix`` + ``length`` base-36 characters keyed on the PatientID."""
    number = int.from_bytes(_mac(secret, b"pseudonym", patient_id), "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 36)
        chars.append(_B36[rest])
    return prefix + "".join(chars)


def date_shift(secret: bytes, patient_id: str, max_days: int) -> int:
    """Days to move one patient's dates: ±1 … ±``max_days``, never 0, keyed on the PatientID."""
    if max_days < 1:
        raise InputError("max_days must be at least 1")
    number = int.from_bytes(_mac(secret, b"date-shift", patient_id)[:8], "big")
    magnitude = 1 + number % max_days
    return magnitude if (number >> 40) & 1 else -magnitude
