"""The workbench of a client: every operation is a request to the workbench service.

It holds a URL and a token, nothing else: no database, no secret, no node credentials and
no PACS connection. The service establishes who the token belongs to and runs the same
facade method with the same checks a local workbench would run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from ..dicom.spec import Capabilities, FolderSpec, ServerSpec
from ..errors import InputError
from ..jobs.frames import frame_as_batch, frame_study_refs, is_frame
from .access import RemoteAccess
from .client import KeyHeldByService, ServiceClient
from .jobs import RemoteJobHandle, RemoteJobManager
from .node import RemoteNode, spec_from

if TYPE_CHECKING:
    from ..config import Settings
    from ..jobs.upload import UploadResult
    from ..workbench import WorkbenchAPI

__all__ = ["RemoteWorkbench"]


def _study_refs(studies: Any) -> list[Any]:
    """Query results, UIDs, dicts, (patient, study[, series]) tuples or a DataFrame as JSON
    references."""
    if is_frame(studies):  # iterating a frame yields its column names, never rows
        refs: list[Any] = []
        for patient, study, series in frame_study_refs(studies):
            ref = {"patient_id": patient, "study_uid": study}
            refs.append({**ref, "series_uid": series} if series else ref)
        return refs
    if isinstance(studies, str | Mapping) or hasattr(studies, "study_uid"):
        studies = [studies]
    refs = []
    for item in studies:
        if hasattr(item, "study_uid"):
            ref = {"study_uid": item.study_uid, "patient_id": getattr(item, "patient_id", "")}
            if getattr(item, "series_uid", None):
                ref["series_uid"] = item.series_uid
            refs.append(ref)
        elif isinstance(item, str):
            refs.append(item)
        elif isinstance(item, Mapping):
            ref = {
                "study_uid": str(item.get("study_uid") or item.get("StudyInstanceUID") or ""),
                "patient_id": str(item.get("patient_id") or item.get("PatientID") or ""),
            }
            series = item.get("series_uid") or item.get("SeriesInstanceUID")
            if series:
                ref["series_uid"] = str(series)
            refs.append(ref)
        elif isinstance(item, tuple) and len(item) in (2, 3):
            ref = {"patient_id": str(item[0]), "study_uid": str(item[1])}
            if len(item) == 3 and item[2]:
                ref["series_uid"] = str(item[2])
            refs.append(ref)
        else:
            raise InputError(f"cannot transfer a {type(item).__name__}: give studies or series")
    return refs


def _json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if "deid_options" in out and out["deid_options"] is not None:
        names: list[str] = []
        for option in out["deid_options"]:
            if isinstance(option, str):
                names.append(option)
            else:  # an Option flag, possibly several combined
                names.extend(m.name for m in option if m.name)
        out["deid_options"] = names
    return out


def _file(file: Any, name: str | None, kind: str) -> tuple[str, bytes]:
    if is_frame(file):  # sent as the CSV the embedded workbench would parse
        data, frame_name = frame_as_batch(file, kind.removeprefix("batch_"))
        return name or frame_name, data
    if isinstance(file, bytes | bytearray):
        return name or "batch.csv", bytes(file)
    if isinstance(file, str | Path):
        path = Path(file)
        try:
            return name or path.name, path.read_bytes()
        except OSError as exc:
            raise InputError(f"batch file {path}: cannot be read ({exc.strerror})") from None
    if hasattr(file, "read"):
        stream: IO[bytes] = file
        data = stream.read()
        fallback = Path(getattr(file, "name", "batch.csv")).name
        return name or fallback, data if isinstance(data, bytes) else str(data).encode()
    raise InputError(
        f"a batch file is a path, bytes, a binary file or a DataFrame, not {type(file).__name__}"
    )


def _upload_bytes(source: Any, budget: int) -> bytes:
    """The bytes of one upload item (regular files only, below the service's cap)."""
    from ..dicom.part10 import Malformed, read_regular

    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        try:
            data = read_regular(source, max_bytes=budget)
        except Malformed as exc:
            raise InputError(f"not sent: {exc}") from None
        except OSError as exc:
            raise InputError(f"unreadable: {exc.strerror or type(exc).__name__}") from None
    if len(data) > budget:
        raise InputError(f"not sent: larger than the service's request cap ({budget} bytes)")
    return data


class RemoteWorkbench:
    """The notebook API (``node``, ``transfer``, ``batch_query``, ``jobs`` …) over HTTP.

    Create it with :func:`adit_workbench.connect` (inside a JupyterHub user server, or with
    ``ADIT_WB_SERVICE_URL`` and ``ADIT_WB_API_TOKEN`` set).
    """

    def __init__(self, url: str, token: str, settings: Settings | None = None) -> None:
        self.settings = settings
        self.url = url
        timeout = settings.http_timeout if settings is not None else 60.0
        self._client = ServiceClient(url, token, timeout=timeout)

    @cached_property
    def _me(self) -> dict[str, Any]:
        data: dict[str, Any] = self._client.get("api/me")
        return data

    @cached_property
    def access(self) -> RemoteAccess:
        """What the service says this user may do (for showing; the service checks)."""
        return RemoteAccess(self._client)

    @property
    def user(self) -> str:
        """The name of the user the service knows this token as."""
        return str(self._me["user"])

    def __repr__(self) -> str:
        return f"<RemoteWorkbench user={self.user!r} service={self.url!r}>"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> RemoteWorkbench:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- nodes ------------------------------------------------------------------------
    def node_specs(self) -> list[ServerSpec | FolderSpec]:
        """The nodes this user may use, as credential-free specs (folders without paths)."""
        out: list[ServerSpec | FolderSpec] = []
        for info in self._client.get("api/nodes"):
            spec = spec_from(info)
            out.append(spec if spec is not None else FolderSpec(info["name"], Path("")))
        return out

    def node(self, name: str) -> RemoteNode:
        """The node ``name`` (NodeAccessDenied when the user may not use it)."""
        return RemoteNode(self._client, self._client.get(f"api/nodes/{quote(name, safe='')}"))

    def echo(self, name: str) -> None:
        """C-ECHO on the service's side."""
        self.node(name).echo()

    def probe(self, name: str) -> Capabilities:
        """Measure what a node supports and store it (admins)."""
        return self.node(name).probe()

    def add_server(
        self,
        name: str,
        *,
        ae_title: str,
        host: str,
        port: int,
        dicomweb_url: str | None = None,
        **options: Any,
    ) -> ServerSpec:
        """Register a DICOM server (admins)."""
        body = {"name": name, "kind": "server", "ae_title": ae_title, "host": host,
                "port": port, "dicomweb_url": dicomweb_url, **options}  # fmt: skip
        spec = spec_from(self._client.post("api/nodes", body))
        assert spec is not None
        return spec

    def add_folder(self, name: str, path: str | Path, **options: Any) -> FolderSpec:
        """Register a folder on the service's machine (admins)."""
        self._client.post("api/nodes", {"name": name, "kind": "folder", "path": str(path)})
        return FolderSpec(name, Path(path))

    def remove_node(self, name: str) -> None:
        """Unregister a node (admins)."""
        self._client.request("DELETE", f"api/nodes/{quote(name, safe='')}")

    # -- jobs -------------------------------------------------------------------------
    @cached_property
    def jobs(self) -> RemoteJobManager:
        """This user's jobs: ``list()``, ``[id]``, ``cancel`` …"""
        return RemoteJobManager(self._client)

    def _created(self, data: Mapping[str, Any]) -> RemoteJobHandle:
        return RemoteJobHandle(self._client, int(data["id"]))

    def transfer(
        self,
        studies: Any,
        *,
        to: str,
        source: str | None = None,
        pseudonym: str | None = None,
        **options: Any,
    ) -> RemoteJobHandle:
        """Transfer studies or series to node ``to`` (see ``Workbench.transfer``)."""
        from ..workbench import _source_of

        if source is None:
            source = _source_of(studies)
        body = {"source": source, "to": to, "studies": _study_refs(studies),
                "pseudonym": pseudonym, **_json_options(options)}  # fmt: skip
        return self._created(self._client.post("api/jobs/transfer", body))

    def _upload(self, kind: str, file: Any, params: dict[str, Any]) -> RemoteJobHandle:
        name, data = _file(file, params.pop("name", None), kind)
        files = {"file": (name, data, "application/octet-stream")}
        form = {"params": json.dumps(_json_options(params))}
        return self._created(self._client.post(f"api/jobs/{kind}", files=files, data=form))

    def batch_query(self, file: Any, *, source: str, **options: Any) -> RemoteJobHandle:
        """Query ``source`` for each row of a batch file (uploaded to the service)."""
        return self._upload("batch_query", file, {"source": source, **options})

    def batch_transfer(self, file: Any, *, source: str, to: str, **options: Any) -> RemoteJobHandle:
        """Transfer the studies of a batch file (uploaded to the service)."""
        return self._upload("batch_transfer", file, {"source": source, "to": to, **options})

    def mass_transfer(
        self, *, source: str, to: str, start: Any, end: Any, filters: Any, **options: Any
    ) -> RemoteJobHandle:
        """Every series from ``start`` to ``end`` matching ``filters``."""
        if isinstance(filters, Path) or (
            isinstance(filters, str) and filters.endswith(".json") and Path(filters).is_file()
        ):
            filters = Path(filters).read_text()
        body = {"source": source, "to": to, "start": str(start), "end": str(end),
                "filters": filters, **_json_options(options)}  # fmt: skip
        return self._created(self._client.post("api/jobs/mass_transfer", body))

    # -- upload -----------------------------------------------------------------------
    def upload(
        self,
        files: Any,
        *,
        destination: str,
        pseudonym: str | None = None,
        trial_protocol_id: str | None = None,
        trial_protocol_name: str | None = None,
        project_name: str | None = None,
        deid_options: Any = (),
        via: str | None = None,
    ) -> UploadResult:
        """Send local DICOM files to the service, which pseudonymizes them and stores them
        to ``destination`` (see ``Workbench.upload``).

        The files go in requests below the service's body cap, one file read at a time;
        a file larger than the cap is refused by name without being sent.
        """
        from ..jobs.upload import UploadResult, iter_folder
        from ..workbench import _option_names

        items = iter_folder(files) if isinstance(files, str | Path) else files
        limits = self._client.get("api/uploads")
        cap = int(limits["max_request_bytes"])
        budget = cap - min(64_000, max(2_000, cap // 10))  # room for the form's framing
        params = json.dumps({
            "destination": destination, "pseudonym": pseudonym,
            "trial_protocol_id": trial_protocol_id, "trial_protocol_name": trial_protocol_name,
            "project_name": project_name, "deid_options": _option_names(deid_options),
            "via": via,
        })  # fmt: skip
        total = UploadResult(destination)
        batch: list[tuple[str, tuple[str, bytes, str]]] = []
        size = 0

        def send() -> None:
            nonlocal size
            if batch:
                answer = self._client.post("api/uploads", files=batch, data={"params": params})
                total.merge(UploadResult.from_dict(answer))
                batch.clear()
                size = 0

        for name, source in items:
            try:
                data = _upload_bytes(source, budget)
            except InputError as exc:
                total.refused.append((name, str(exc)))
                continue
            if size + len(data) + 512 > budget or len(batch) >= int(limits["max_files"]):
                send()
            batch.append(("files", (name, data, "application/dicom")))
            size += len(data) + 512
        send()
        return total

    # -- de-identification ------------------------------------------------------------
    def pseudonymizer(self, **options: Any) -> Any:
        """Not available in a kernel of the service: raises :class:`KeyHeldByService`.

        A local pseudonymizer holds the project's key, derived from the site's secret,
        and the point of the service is that kernels never hold that secret. Pseudonymize
        through the service instead, where the same key and profile are applied:

        * ``series.datasets(project="LUNG-01")`` (or ``pseudonym="P1"``): instances
          streamed into the notebook, pseudonymized by the service;
        * ``wb.transfer(studies, to=…, pseudonym=…, project_name=…)``: a job;
        * DICOMweb WADO-RS with ``?pseudonym=…&project=…``.
        """
        raise KeyHeldByService(
            "wb.pseudonymizer() needs the site's secret, which only the workbench service "
            "holds: pseudonymize through the service instead, with "
            "series.datasets(project=..., pseudonym=...), a transfer job "
            "(wb.transfer(..., pseudonym=...)) or DICOMweb (?pseudonym=...&project=...)"
        )


if TYPE_CHECKING:  # mypy checks that the remote workbench has the whole shared API
    _IMPLEMENTS: type[WorkbenchAPI] = RemoteWorkbench
