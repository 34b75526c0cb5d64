"""The HTTP side of the remote workbench: one session, the token, JSON errors re-raised.

Every answer that is not 2xx carries ``{"error": CODE, "message": …}``; :func:`raise_error`
turns it back into the exception class the service raised (``NotFound``,
``NodeAccessDenied``, ``BatchFileError`` …), so that a notebook catches the same errors
whichever workbench it holds. Reads are retried while the service restarts
(:data:`RECONNECT_SECONDS`); requests that create something are not, so that a job is
never created twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import requests

from .. import errors as errors_module
from ..errors import (
    ConfigurationError,
    InputError,
    NotFound,
    PermissionDenied,
    WorkbenchError,
)

__all__ = [
    "RECONNECT_SECONDS",
    "KeyHeldByService",
    "ServiceClient",
    "ServiceUnavailable",
    "raise_error",
]

#: How long reads keep retrying while the service cannot be reached (it may be restarting).
RECONNECT_SECONDS = 30.0


class ServiceUnavailable(ConfigurationError):
    """The workbench service could not be reached (or answered 503)."""

    retriable = True


def _classes() -> dict[str, type[WorkbenchError]]:
    from ..jobs.batchfile import BatchFileError
    from ..jobs.progress import JobFailed

    found = {
        name: cls
        for name in errors_module.__all__
        if isinstance(cls := getattr(errors_module, name), type) and issubclass(cls, WorkbenchError)
    }
    found.update(BatchFileError=BatchFileError, JobFailed=JobFailed)
    return found


class KeyHeldByService(PermissionDenied):
    """Asked for something that needs the site's secret, which only the service holds
    (e.g. a local pseudonymizer in a kernel of the service)."""


_BY_STATUS: dict[int, type[WorkbenchError]] = {
    400: InputError,
    401: PermissionDenied,
    403: PermissionDenied,
    404: NotFound,
    413: InputError,
    415: InputError,
    422: InputError,
    503: ServiceUnavailable,
}


def rebuild_error(status: int, body: Mapping[str, Any]) -> WorkbenchError:
    """The exception the service raised, rebuilt from its JSON error answer."""
    code = str(body.get("error", ""))
    message = str(body.get("message", f"the workbench service answered HTTP {status}"))
    cls = _classes().get(code)
    if cls is not None and cls.__name__ == "BatchFileError" and "rows" in body:
        from ..jobs.batchfile import BatchFileError, RowError

        attributes = body.get("attributes") or {}
        rows = [RowError(int(r["line"]), str(r["column"]), str(r["reason"])) for r in body["rows"]]
        return BatchFileError(str(attributes.get("name", "batch file")), rows)
    if cls is None:
        cls = _BY_STATUS.get(status, WorkbenchError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    for key, value in (body.get("attributes") or {}).items():
        setattr(exc, key, value)
    if "retriable" in body:
        exc.retriable = bool(body["retriable"])
    return exc


def raise_error(response: requests.Response) -> None:
    """Raise the workbench error an unsuccessful answer describes."""
    if response.ok:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise rebuild_error(response.status_code, body) from None


class ServiceClient:
    """A ``requests`` session bound to the service's base URL and the caller's token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Token {token}"
        self._session.headers["User-Agent"] = "adit-workbench-remote"
        # The environment (proxy variables, CA bundle) is read once, here: requests
        # otherwise reads it, and looks for a ~/.netrc, on every request, a cost each
        # query paid. Without trust_env a ~/.netrc entry cannot replace the token either.
        found = self._session.merge_environment_settings(self.base_url, {}, None, None, None)
        self._session.proxies.update(found["proxies"])
        self._session.verify = found["verify"]
        self._session.trust_env = False

    def __repr__(self) -> str:
        return f"<ServiceClient {self.base_url}>"

    def close(self) -> None:
        """Close the connection pool."""
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request; raise the service's error; retry reads while it restarts."""
        url = self.base_url + path.lstrip("/")
        retry = method == "GET" if retry is None else retry
        deadline = time.monotonic() + RECONNECT_SECONDS
        delay = 0.2
        while True:
            try:
                response = self._session.request(
                    method, url, timeout=self.timeout, stream=stream, **kwargs
                )
            except requests.ConnectionError as exc:
                if not retry or time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"the workbench service at {self.base_url} cannot be reached: "
                        f"{type(exc).__name__}"
                    ) from None
            except requests.Timeout:
                raise ServiceUnavailable(
                    f"the workbench service at {self.base_url} did not answer in time"
                ) from None
            else:
                if not (retry and response.status_code in (502, 503) and time.monotonic() < deadline
                        and "error" not in _json_or_empty(response)):  # fmt: skip
                    raise_error(response)
                    return response
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET and decode JSON."""
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: Any = None, *, retry: bool = False, **kwargs: Any) -> Any:
        """POST JSON (or ``files``/``data`` for uploads) and decode the answer."""
        if body is not None:
            kwargs["json"] = body
        response = self.request("POST", path, retry=retry, **kwargs)
        return response.json() if response.content else None

    def ndjson(self, path: str, body: Any, *, retry: bool = True) -> Iterator[dict[str, Any]]:
        """POST now (a refused request raises here, as a local call would) and return the
        lines of the NDJSON answer; an ``error`` line is raised where it arrives."""
        response = self.request("POST", path, json=body, stream=True, retry=retry)
        return _lines(response)


def _lines(response: requests.Response) -> Iterator[dict[str, Any]]:
    with response:
        for raw in response.iter_lines():
            if not raw:
                continue
            line = json.loads(raw)
            if "error" in line:
                raise rebuild_error(502, line)
            yield line


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
