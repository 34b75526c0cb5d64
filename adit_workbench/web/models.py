"""Request bodies of the REST API: pydantic models that refuse unknown fields.

Types and shapes are checked here (a UID is digits and dots, a limit a positive whole
number, a name has no path separators); the meaning of a value (a date range, a filter
keyword, a permission) is checked by the facade's own code, so the service and the
notebook refuse the same things with the same messages.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "ActionRequest",
    "AddNodeRequest",
    "BatchParams",
    "ExplainParams",
    "FindRequest",
    "GrantRequest",
    "MassTransferRequest",
    "MembersRequest",
    "PermissionRequest",
    "QueryRequest",
    "SiteRequest",
    "StudyRef",
    "TokenRequest",
    "TransferRequest",
]

#: A DICOM UID: digits and dots, at most 64 characters.
Uid = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)*$", max_length=64)]
#: A node, group or user name: printable, no slashes, no leading dot, at most 64 characters.
Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_@+\-][A-Za-z0-9_.@+\- ]{0,63}$", strip_whitespace=True),
]
Text = Annotated[str, StringConstraints(max_length=1000)]
FilterValue = str | int | float | bool | None | list[str | int | float | None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=10_000)


class QueryRequest(_Strict):
    """``POST /api/nodes/{name}/query``: the filters of ``find_<level>``."""

    level: Literal["patient", "study", "series", "instance"] = "study"
    filters: dict[Annotated[str, StringConstraints(max_length=64)], FilterValue] = Field(
        default_factory=dict, max_length=40
    )
    limit: int | None = Field(default=None, ge=1, le=100_000)
    via: Literal["auto", "dimse", "dicomweb"] = "auto"
    stream: bool = False


class FindRequest(_Strict):
    """``POST /api/nodes/{name}/find``: one raw find (used to navigate results)."""

    level: Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
    identifier: dict[str, Any] = Field(max_length=200)
    limit: int | None = Field(default=None, ge=1, le=100_000)
    root: Literal["patient", "study"] | None = None


class StudyRef(_Strict):
    """A study (or one series of it) to transfer."""

    study_uid: Uid
    patient_id: Annotated[str, StringConstraints(max_length=64)] = ""
    series_uid: Uid | None = None


class _JobOptions(_Strict):
    urgent: bool = False
    pseudonymize: bool = True
    project_name: Annotated[str, StringConstraints(max_length=150)] = ""
    project_description: Text = ""
    ethics_approval_id: Annotated[str, StringConstraints(max_length=100)] = ""
    trial_protocol_id: Annotated[str, StringConstraints(max_length=64)] = ""
    trial_protocol_name: Annotated[str, StringConstraints(max_length=64)] = ""
    deid_options: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=20
    )
    archive_password: Annotated[str, StringConstraints(max_length=200)] | None = None
    convert_to_nifti: bool = False
    send_finished_mail: bool = False

    def options(self) -> dict[str, Any]:
        """The options as keyword arguments of the facade (unset ones left out)."""
        return self.model_dump(exclude_unset=True)


class TransferRequest(_JobOptions):
    """``POST /api/jobs/transfer``: a selective transfer."""

    source: Name
    to: Name
    studies: list[StudyRef | Uid] = Field(min_length=1, max_length=10_000)
    pseudonym: Annotated[str, StringConstraints(max_length=64)] | None = None

    def options(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in super().options().items()
            if k not in ("source", "to", "studies", "pseudonym")
        }


class BatchParams(_JobOptions):
    """The ``params`` form field of ``POST /api/jobs/batch_query`` and ``batch_transfer``."""

    source: Name
    to: Name | None = None

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in super().options().items() if k not in ("source", "to")}


class MassTransferRequest(_JobOptions):
    """``POST /api/jobs/mass_transfer``."""

    source: Name
    to: Name
    start: Annotated[str, StringConstraints(max_length=10)]
    end: Annotated[str, StringConstraints(max_length=10)]
    filters: list[dict[str, Any]] | str = Field(max_length=100)
    granularity: Literal["daily", "weekly"] = "daily"

    def options(self) -> dict[str, Any]:
        skip = ("source", "to", "start", "end", "filters")
        return {k: v for k, v in super().options().items() if k not in skip}


class ExplainParams(_Strict):
    """The ``params`` form field of ``POST /api/deid/explain``: what a job would be given."""

    project_name: Annotated[str, StringConstraints(max_length=150)] = ""
    pseudonym: Annotated[str, StringConstraints(max_length=64)] | None = None
    trial_protocol_id: Annotated[str, StringConstraints(max_length=64)] = ""
    trial_protocol_name: Annotated[str, StringConstraints(max_length=64)] = ""
    deid_options: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=20
    )


class ActionRequest(_Strict):
    """Body of resume/retry/restart (optional): the archive password again."""

    archive_password: Annotated[str, StringConstraints(max_length=200)] | None = None


class AddNodeRequest(_Strict):
    """``POST /api/nodes`` (admin): a DICOM server or a folder."""

    name: Name
    kind: Literal["server", "folder"]
    ae_title: Annotated[str, StringConstraints(max_length=16)] | None = None
    host: Annotated[str, StringConstraints(max_length=255)] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    dicomweb_url: Annotated[str, StringConstraints(max_length=500)] | None = None
    path: Annotated[str, StringConstraints(max_length=1000)] | None = None
    max_search_results: int | None = Field(default=None, ge=1, le=100_000)
    max_associations: int | None = Field(default=None, ge=1, le=64)


class GrantRequest(_Strict):
    """``POST /api/admin/groups/{group}/nodes``."""

    node: Name
    source: bool = False
    destination: bool = False


class PermissionRequest(_Strict):
    """``POST /api/admin/groups/{group}/permissions``."""

    permission: Annotated[str, StringConstraints(max_length=64)]


class MembersRequest(_Strict):
    """``PUT /api/admin/groups/{group}/members``."""

    users: list[Name] = Field(max_length=10_000)


class SiteRequest(_Strict):
    """``PUT /api/admin/site``: maintenance mode and/or the announcement."""

    maintenance: bool | None = None
    announcement: Text | None = None


class TokenRequest(_Strict):
    """``POST /api/tokens``: a new workbench API token for the caller."""

    expires: Literal[1, 7, 30, 90, "never"] = 30
    description: Annotated[str, StringConstraints(max_length=200)] = ""
