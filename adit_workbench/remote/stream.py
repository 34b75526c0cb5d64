"""Instances streamed from the service into the kernel, one at a time.

The answer of ``/api/nodes/{node}/studies/…`` is ``multipart/related``; it is read with
the multipart reader of the WADO-RS client (:mod:`adit_workbench.dicom.retrieve`) as it
arrives, and each part becomes a :class:`~pydicom.Dataset` before the next is read, so a
study of any size costs the kernel one instance (plus what the caller keeps).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

import requests
from pydicom import Dataset, dcmread

from ..dicom.retrieve import _multipart
from ..errors import InputError, NodeError

if TYPE_CHECKING:
    from .client import ServiceClient

__all__ = ["retrieve_stream"]

_ACCEPT = 'multipart/related; type="application/dicom"'


def _path(node_path: str, query: Dataset) -> str:
    study = str(query.get("StudyInstanceUID", "") or "")
    series = str(query.get("SeriesInstanceUID", "") or "")
    sop = str(query.get("SOPInstanceUID", "") or "")
    if not study:
        raise InputError("a retrieve through the service needs a StudyInstanceUID")
    if sop and not series:
        raise InputError("an instance retrieve needs a SeriesInstanceUID")
    path = f"{node_path}/studies/{quote(study, safe='')}"
    if series:
        path += f"/series/{quote(series, safe='')}"
    if sop:
        path += f"/instances/{quote(sop, safe='')}"
    return path


def retrieve_stream(
    client: ServiceClient,
    node: str,
    node_path: str,
    query: Dataset,
    *,
    via: str | None = None,
    pseudonym: str | None = None,
    project: str | None = None,
) -> Iterator[Dataset]:
    """Send the request now (a refusal raises here) and return the instances' iterator."""
    params = {k: v for k, v in (("via", via), ("pseudonym", pseudonym), ("project", project))
              if v is not None}  # fmt: skip
    response = client.request(
        "GET", _path(node_path, query), params=params, stream=True, retry=True,
        headers={"Accept": _ACCEPT},
    )  # fmt: skip
    if response.headers.get("X-Workbench-Pseudonymized") == "imposed":
        warnings.warn(
            f"{node}: these instances are pseudonymized (project 'default'): originals "
            "need the transfer_unpseudonymized permission; pass pseudonym= or project= "
            "to choose the pseudonymization",
            UserWarning,
            stacklevel=4,
        )
    return _datasets(response, node)


def _datasets(response: requests.Response, node: str) -> Iterator[Dataset]:
    with response:
        parts = _multipart(response.headers.get("Content-Type", ""), response)
        try:
            for data in parts:
                yield dcmread(io.BytesIO(data), force=True)
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
            # The service cuts the connection when the node fails part-way: never pass a
            # partial answer off as the whole series.
            raise NodeError(
                node,
                "retrieve",
                "the workbench service stopped sending instances part-way (the node "
                "failed or the service restarted); nothing after this point was received",
            ) from None
