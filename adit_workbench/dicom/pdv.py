"""P-DATA-TF contents: PDV items read (checked) and a DIMSE message framed into PDUs.

PS3.8 9.3.5 and Annex E: a P-DATA-TF PDU holds PDV items, each a presentation context
ID, a message control header (command or data set, last fragment or not) and a
fragment. What arrives is checked before it is indicated: PDV lengths within the PDU,
only accepted presentation context IDs, no reserved message control bits.
"""

from __future__ import annotations

import struct

from . import pdus
from .pdus import Invalid

__all__ = ["COMMAND_CAP", "MAX_MESSAGE", "MAX_PDU", "PDV", "p_data", "pdvs"]

#: Our maximum P-DATA-TF length (announced): a 0.5 MB instance in one PDU.
MAX_PDU = 1 << 20
#: Largest command set (group 0000) accepted; real ones are a few hundred bytes.
COMMAND_CAP = 1 << 16
#: Largest data set held for one DIMSE message unless the caller says otherwise.
MAX_MESSAGE = 1 << 31

#: A presentation data value: context ID, message control header, fragment.
PDV = tuple[int, int, memoryview]


def pdvs(body: bytearray, contexts: dict[int, tuple[str, str]]) -> list[PDV]:
    """The PDV items of a P-DATA-TF body, checked (PS3.8 9.3.5, E.2)."""
    found: list[PDV] = []
    view = memoryview(body)
    at, end = 0, len(body)
    if end < 6:
        raise Invalid("a P-DATA-TF PDU without a PDV item")
    while at < end:
        if at + 6 > end:
            raise Invalid("a truncated PDV item")
        length = int.from_bytes(body[at : at + 4], "big")
        if length < 2 or at + 4 + length > end:
            raise Invalid("a PDV item longer than its PDU")
        context, control = body[at + 4], body[at + 5]
        if context not in contexts:
            raise Invalid(f"a PDV on presentation context {context}, which was not accepted")
        if control & 0xFC:
            raise Invalid("a PDV with reserved message control bits set")
        found.append((context, control, view[at + 6 : at + 4 + length]))
        at += 4 + length
    return found


def p_data(context: int, command_set: bytes, dataset: bytes, peer_max: int) -> bytes:
    chunk = peer_max - 6 if peer_max > 6 else max(len(command_set), len(dataset), 1)
    out = []
    for payload, is_command in ((command_set, True), (dataset, False)):
        for at in range(0, len(payload), chunk):
            fragment = payload[at : at + chunk]
            control = (1 if is_command else 0) | (2 if at + chunk >= len(payload) else 0)
            pdv = struct.pack(">IBB", len(fragment) + 2, context, control) + fragment
            out.append(struct.pack(">BxI", pdus.P_DATA, len(pdv)) + pdv)
    return b"".join(out)
