"""SQLAlchemy 2 models: one schema for SQLite and PostgreSQL.

Nodes use joined-table inheritance: the ``node`` table holds what every node has (the
name, unique across servers *and* folders, enforced by the database) and the kind;
``dicom_server`` and ``dicom_folder`` hold the rest and share the node's primary key.
Later tables (node access, jobs, tasks) refer to ``node.id`` whatever the kind.

Constraint names come from :data:`NAMING_CONVENTION` so that Alembic migrations name
them identically on both back-ends. Datetimes are stored as UTC and always come back
timezone-aware (SQLite has no time zones; :class:`UTCDateTime` bridges that).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "DicomFolder",
    "DicomServer",
    "Node",
    "NodeKind",
    "UTCDateTime",
    "utcnow",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 64
AE_TITLE_LENGTH = 16
HOST_LENGTH = 255
URL_LENGTH = 2048
PREFIX_LENGTH = 255


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned timezone-aware on every back-end.

    Naive datetimes are refused on the way in: guessing their zone is how a job's start
    ends up an hour off. Callers convert first (``dt.astimezone(UTC)``).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given where UTC is required")
        value = value.astimezone(UTC)
        # SQLite keeps text without an offset; storing UTC without it keeps ordering right.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table, carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class NodeKind(StrEnum):
    """What a node row is; the discriminator of the node hierarchy."""

    SERVER = "server"
    FOLDER = "folder"


class Node(Base):
    """A DICOM node: a server or a folder. The name is unique across both kinds."""

    __tablename__ = "node"
    __table_args__: tuple[Any, ...] = (
        CheckConstraint("kind IN ('server', 'folder')", name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {  # noqa: RUF012 (read once by SQLAlchemy, never mutated)
        "polymorphic_on": "kind",
        "polymorphic_abstract": True,
    }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    __str__ = __repr__

    def touch(self) -> None:
        """Mark the node as changed now.

        ``onupdate`` fires only when a column of the ``node`` table itself changes; an
        edit that touches only the child table would otherwise leave it stale.
        """
        self.updated_at = utcnow()


class DicomServer(Node):
    """A DICOM server reached by DIMSE and/or DICOMweb, with its capability flags."""

    __tablename__ = "dicom_server"
    __table_args__: tuple[Any, ...] = (
        CheckConstraint("port BETWEEN 1 AND 65535", name="port_range"),
        CheckConstraint("max_search_results >= 1", name="max_search_results_positive"),
        CheckConstraint("max_associations >= 1", name="max_associations_positive"),
    )
    __mapper_args__ = {  # noqa: RUF012 (read once by SQLAlchemy, never mutated)
        "polymorphic_identity": NodeKind.SERVER.value
    }

    id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(AE_TITLE_LENGTH))
    host: Mapped[str] = mapped_column(String(HOST_LENGTH))
    port: Mapped[int] = mapped_column(Integer)

    # Capability flags: column names equal Capabilities.FLAGS so mapping is a loop.
    echo: Mapped[bool] = mapped_column(Boolean, default=True)
    patient_root_find: Mapped[bool] = mapped_column(Boolean, default=False)
    study_root_find: Mapped[bool] = mapped_column(Boolean, default=True)
    patient_root_get: Mapped[bool] = mapped_column(Boolean, default=False)
    study_root_get: Mapped[bool] = mapped_column(Boolean, default=False)
    patient_root_move: Mapped[bool] = mapped_column(Boolean, default=False)
    study_root_move: Mapped[bool] = mapped_column(Boolean, default=False)
    store: Mapped[bool] = mapped_column(Boolean, default=False)
    qido: Mapped[bool] = mapped_column(Boolean, default=False)
    wado: Mapped[bool] = mapped_column(Boolean, default=False)
    stow: Mapped[bool] = mapped_column(Boolean, default=False)

    dicomweb_root_url: Mapped[str | None] = mapped_column(String(URL_LENGTH))
    dicomweb_qido_prefix: Mapped[str] = mapped_column(String(PREFIX_LENGTH), default="")
    dicomweb_wado_prefix: Mapped[str] = mapped_column(String(PREFIX_LENGTH), default="")
    dicomweb_stow_prefix: Mapped[str] = mapped_column(String(PREFIX_LENGTH), default="")
    # Sent as the HTTP Authorization header. Kept out of __repr__ (and the engine hides
    # bound parameters) so that it never reaches a log or a notebook output.
    dicomweb_authorization: Mapped[str | None] = mapped_column(Text)

    max_search_results: Mapped[int] = mapped_column(Integer, default=1000)
    max_associations: Mapped[int] = mapped_column(Integer, default=2)

    probed_at: Mapped[datetime | None] = mapped_column()
    probe_details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def __repr__(self) -> str:
        return f"<DicomServer {self.name!r} {self.ae_title}@{self.host}:{self.port}>"

    __str__ = __repr__


class DicomFolder(Node):
    """A folder on a file system used as a source or destination of studies."""

    __tablename__ = "dicom_folder"
    __table_args__: tuple[Any, ...] = (
        CheckConstraint("quota_gb IS NULL OR quota_gb >= 0", name="quota_gb_nonnegative"),
        CheckConstraint(
            "warn_size_gb IS NULL OR warn_size_gb >= 0", name="warn_size_gb_nonnegative"
        ),
    )
    __mapper_args__ = {  # noqa: RUF012 (read once by SQLAlchemy, never mutated)
        "polymorphic_identity": NodeKind.FOLDER.value
    }

    id: Mapped[int] = mapped_column(ForeignKey("node.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    quota_gb: Mapped[float | None] = mapped_column(Float)
    warn_size_gb: Mapped[float | None] = mapped_column(Float)

    def __repr__(self) -> str:
        return f"<DicomFolder {self.name!r} {self.path}>"

    __str__ = __repr__
