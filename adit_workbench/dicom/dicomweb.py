"""A DICOM server reached over DICOMweb (dicomweb-client): QIDO-RS, WADO-RS, STOW-RS.

QIDO searches are mapped onto the same :meth:`find` primitive as C-FIND: the query is a
pydicom Dataset (matching keys with values, return keys empty) and the results are
Datasets. Transport errors are wrapped: HTTP errors become
:class:`~adit_workbench.errors.DicomWebError`, refused connections
:class:`~adit_workbench.errors.NodeUnreachable`, timeouts
:class:`~adit_workbench.errors.NodeTimeout`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pydicom.multival import MultiValue

from ..errors import DicomWebError, InputError, NodeError, NodeTimeout, NodeUnreachable
from .node import LEVEL_KEYS, NodeBase, QueryLevel, QueryRoot
from .retrieve import iter_wado
from .spec import Capabilities, ServerSpec
from .storage import StoreItem, StoreResult, store_stow

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["DicomWebNode", "RawQuerySession", "dataset_to_filters"]

T = TypeVar("T")

#: Results requested per QIDO page when no smaller limit is asked for.
PAGE_SIZE = 500

# Characters that RFC 3986 allows raw in a query and QIDO values need: wildcards and
# the separator of value lists. Sending them raw is valid for every server.
_RAW_IN_QUERY = frozenset("*?,")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _unescape_query(query: str) -> str:
    def repl(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _RAW_IN_QUERY else match.group(0)

    return _ESCAPE.sub(repl, query)


class RawQuerySession(requests.Session):
    """A session that sends ``* ? ,`` unescaped in query strings and applies a timeout.

    Orthanc 1.10 (Debian) does not percent-decode query values, so ``PatientID=SYN%2A``
    matches nothing while ``PatientID=SYN*`` works. ``^`` cannot be helped this way
    (urllib3 re-encodes it on the wire); :func:`dataset_to_filters` sends ``*`` instead.
    """

    def __init__(self, timeout: float | tuple[float, float] | None = None) -> None:
        super().__init__()
        self.default_timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if request.url:
            parts = urllib.parse.urlsplit(request.url)
            if parts.query:
                request.url = urllib.parse.urlunsplit(
                    parts._replace(query=_unescape_query(parts.query))
                )
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().send(request, **kwargs)


def dataset_to_filters(query: Dataset) -> tuple[dict[str, str], list[str]]:
    """QIDO ``search_filters`` and ``fields`` (includefield) from a C-FIND-style Dataset.

    Elements with a value are matching keys; empty ones are return keys. Value lists
    (UID lists) are joined with ``,``. In person names ``^`` becomes ``*``: Orthanc
    1.10 cannot receive ``^`` (see :class:`RawQuerySession`), and ``*`` also matches it,
    so a name query can only match more, never less. Sequences are not sent.
    """
    filters: dict[str, str] = {}
    fields: list[str] = []
    for element in query:
        keyword = element.keyword
        if not keyword or keyword == "QueryRetrieveLevel" or element.VR == "SQ":
            continue
        value = element.value
        if value is None or value == "" or (isinstance(value, MultiValue) and not value):
            fields.append(keyword)
            continue
        if isinstance(value, MultiValue | list | tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        if element.VR == "PN":
            text = text.replace("^", "*")
        filters[keyword] = text
    return filters, fields


class DicomWebNode(NodeBase):
    """A DICOM server spoken to over DICOMweb.

    Parameters
    ----------
    spec:
        The server; ``dicomweb_root_url`` must be set. Its ``dicomweb_authorization`` is
        sent as the ``Authorization`` header.
    settings:
        The connect and HTTP timeouts.
    """

    def __init__(self, spec: ServerSpec, settings: Settings) -> None:
        super().__init__(spec.name)
        if not spec.dicomweb_root_url:
            raise InputError(f"{spec.name}: no DICOMweb root URL configured")
        self.spec = spec
        self.settings = settings
        self.root_url = spec.dicomweb_root_url.rstrip("/")
        timeout = (settings.connect_timeout, settings.http_timeout)
        self.session = RawQuerySession(timeout)
        if spec.dicomweb_authorization:
            self.session.headers["Authorization"] = spec.dicomweb_authorization
        self.client = DICOMwebClient(
            url=self.root_url,
            session=self.session,
            qido_url_prefix=spec.dicomweb_qido_prefix or None,
            wado_url_prefix=spec.dicomweb_wado_prefix or None,
            stow_url_prefix=spec.dicomweb_stow_prefix or None,
            timeout=timeout,
        )
        # dicomweb-client's retry decorator also retries every exception, so a server
        # that is down costs 30 s of back-off before the error shows. Retrying is the
        # job layer's decision (it knows ``retriable``); here one attempt answers.
        self.client.set_http_retry_params(retry=False)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.session.close()

    def service_url(self, service: str) -> str:
        """The base URL of ``"qido"``, ``"wado"`` or ``"stow"`` (root plus its prefix)."""
        prefix = getattr(self.spec, f"dicomweb_{service}_prefix", "") or ""
        return self.root_url + (f"/{prefix.strip('/')}" if prefix.strip("/") else "")

    # -- error mapping -----------------------------------------------------------------
    @contextmanager
    def wrap(self, operation: str) -> Iterator[None]:
        """Turn requests/dicomweb-client exceptions into the workbench's errors."""
        try:
            yield
        except requests.HTTPError as exc:
            response = exc.response
            code = response.status_code if response is not None else 0
            reason = response.reason if response is not None else str(exc)
            raise DicomWebError(self.name, operation, code, reason or "") from exc
        except requests.Timeout as exc:
            raise NodeTimeout(
                self.name, operation, f"no response within {self.settings.http_timeout:g} s"
            ) from exc
        except requests.ConnectionError as exc:
            raise NodeUnreachable(
                self.name, operation, f"cannot connect to {self.root_url}"
            ) from exc
        except (requests.RequestException, ValueError) as exc:
            raise NodeError(
                self.name, operation, f"invalid response: {type(exc).__name__}"
            ) from exc

    def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with errors wrapped."""
        with self.wrap(operation):
            return fn(*args, **kwargs)

    # -- echo --------------------------------------------------------------------------
    def echo(self) -> None:
        """A QIDO search for one study: DICOMweb has no verification service."""
        self.call("QIDO-RS", self.client.search_for_studies, limit=1)

    # -- find --------------------------------------------------------------------------
    def find(
        self,
        level: QueryLevel | str,
        query: Dataset,
        *,
        limit: int | None = None,
        root: QueryRoot | str | None = None,
    ) -> Iterator[Dataset]:
        """Stream QIDO-RS matches as Datasets, paging with ``limit``/``offset``.

        ``root`` is accepted for symmetry with C-FIND and ignored: QIDO resources are
        not rooted. PATIENT level has no QIDO resource; it is a study search reduced to
        one result per PatientID.
        """
        level = QueryLevel.parse(level)
        if limit is not None and limit < 0:
            raise InputError("limit must be None or >= 0")
        if level is QueryLevel.PATIENT:
            return self._find_patients(query, limit)
        return self._find(level, query, limit)

    def _search(self, level: QueryLevel, query: Dataset) -> Callable[..., list[dict[str, Any]]]:
        filters, fields = dataset_to_filters(query)
        kwargs: dict[str, Any] = {"search_filters": filters, "fields": fields or None}
        if level in (QueryLevel.SERIES, QueryLevel.IMAGE):
            # Path parameters for single UIDs: every QIDO server supports them.
            study = filters.get("StudyInstanceUID", "")
            if study and "," not in study and "*" not in study:
                kwargs["study_instance_uid"] = filters.pop("StudyInstanceUID")
        if level is QueryLevel.IMAGE and "study_instance_uid" in kwargs:
            series = filters.get("SeriesInstanceUID", "")
            if series and "," not in series and "*" not in series:
                kwargs["series_instance_uid"] = filters.pop("SeriesInstanceUID")
        methods: dict[QueryLevel, Callable[..., list[dict[str, Any]]]] = {
            QueryLevel.STUDY: self.client.search_for_studies,
            QueryLevel.SERIES: self.client.search_for_series,
            QueryLevel.IMAGE: self.client.search_for_instances,
        }
        method = methods[level]

        def search(**page: Any) -> list[dict[str, Any]]:
            return method(**kwargs, **page)

        return search

    def _pages(
        self, level: QueryLevel, query: Dataset, limit: int | None
    ) -> Iterator[list[dict[str, Any]]]:
        search = self._search(level, query)
        offset = 0
        while True:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, max(limit - offset, 1))
            page = self.call("QIDO-RS", search, limit=size, offset=offset or None)
            if not page:
                return
            yield page
            offset += len(page)
            if limit is not None and offset >= limit:
                return

    def _find(self, level: QueryLevel, query: Dataset, limit: int | None) -> Iterator[Dataset]:
        if limit == 0:
            return
        count = 0
        for page in self._pages(level, query, limit):
            for item in page:
                yield _to_dataset(self.name, item)
                count += 1
                if limit is not None and count >= limit:
                    return

    def _find_patients(self, query: Dataset, limit: int | None) -> Iterator[Dataset]:
        if limit == 0:
            return
        study_query = Dataset()
        study_query.update(query)
        if "PatientID" not in study_query:
            study_query.PatientID = ""
        seen: set[str] = set()
        key = LEVEL_KEYS[QueryLevel.PATIENT]
        for page in self._pages(QueryLevel.STUDY, study_query, None):
            for item in page:
                study = _to_dataset(self.name, item)
                patient_id = str(study.get(key, ""))
                if patient_id in seen:
                    continue
                seen.add(patient_id)
                patient = Dataset()
                patient.QueryRetrieveLevel = QueryLevel.PATIENT.value
                for element in study_query:
                    if element.keyword in study and element.keyword != "QueryRetrieveLevel":
                        patient[element.tag] = study[element.tag]
                yield patient
                if limit is not None and len(seen) >= limit:
                    return

    # -- streams ---------------------------------------------------------------------
    def retrieve(
        self, level: QueryLevel | str, query: Dataset, *, root: QueryRoot | str | None = None
    ) -> Iterator[Dataset]:
        """Stream the instances named by ``query`` over WADO-RS (see :mod:`.retrieve`)."""
        return iter_wado(self, level, query)

    def store(self, items: Iterable[StoreItem]) -> StoreResult:
        """STOW-RS datasets or files in batches (see :mod:`.storage`)."""
        return store_stow(self, items)

    # -- probe -------------------------------------------------------------------------
    def probe(self) -> Capabilities:
        """Measure QIDO, WADO and STOW support (see :mod:`.probe`)."""
        from .probe import probe_dicomweb

        return probe_dicomweb(self)


def _to_dataset(node: str, item: dict[str, Any]) -> Dataset:
    try:
        return Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")
    except (ValueError, TypeError, KeyError) as exc:
        raise NodeError(node, "QIDO-RS", "unreadable result (not DICOM JSON)") from exc
