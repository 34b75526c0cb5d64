"""The facade: :func:`connect` returns the :class:`Workbench` a notebook, CLI or widget holds.

It wires settings, the database and the DICOM layer together and holds no logic of its
own: node specs come from the store, live nodes from :func:`adit_workbench.dicom.node.open_node`.
Every public operation goes through one method here, which is where the access layer's
checks sit: :func:`connect` resolves the identity (hub or local user) and each method asks
:class:`~adit_workbench.access.Access` first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .access.identity import resolve_identity
from .access.permissions import Permission
from .config import Settings, get_settings
from .dicom.spec import Capabilities, FolderSpec, ServerSpec
from .errors import InputError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .access import Access
    from .deid.pseudonymizer import Pseudonymizer
    from .dicom.node import Node
    from .jobs import JobHandle, JobManager
    from .jobs.upload import UploadResult
    from .remote import RemoteWorkbench
    from .sandbox.process import SandboxStatus
    from .store import Database

__all__ = ["SANDBOX_NODE", "Workbench", "WorkbenchAPI", "connect", "connect_local"]

#: Name under which the embedded sandbox PACS is registered.
SANDBOX_NODE = "SANDBOX"

NodeSpec = ServerSpec | FolderSpec


class WorkbenchAPI(Protocol):
    """What both workbenches offer: the local one (:class:`Workbench`) and the client of
    the workbench service (:class:`~adit_workbench.remote.RemoteWorkbench`).

    Nodes returned by :meth:`node` have the typed query methods (``find_studies`` …,
    ``iter_*``, ``echo``) and answer with the same result types; jobs have ``wait()``,
    ``progress``, ``tasks``, ``results`` and the actions; errors are the same classes.
    """

    @property
    def user(self) -> str:
        """The user this workbench acts for."""
        ...

    @property
    def access(self) -> Any:
        """What the user may do: ``has()``, ``visible_nodes(role)``, ``site_status()``,
        ``profile()`` (for showing; every operation is checked where it runs)."""
        ...

    def node_specs(self) -> list[NodeSpec]:
        """The nodes the user may use."""
        ...

    def node(self, name: str) -> Any:
        """A node to echo and query."""
        ...

    def echo(self, name: str) -> None:
        """C-ECHO a node."""
        ...

    def probe(self, name: str) -> Capabilities:
        """Measure and store what a node supports (admins)."""
        ...

    def remove_node(self, name: str) -> None:
        """Unregister a node (admins)."""
        ...

    @property
    def jobs(self) -> Any:
        """The user's jobs (``list()``, ``[id]``, actions)."""
        ...

    def transfer(
        self,
        studies: Any,
        *,
        to: str,
        source: str | None = None,
        pseudonym: str | None = None,
        **options: Any,
    ) -> Any:
        """Queue a selective transfer; returns its job handle."""
        ...

    def batch_query(self, file: Any, *, source: str, **options: Any) -> Any:
        """Queue a batch query; returns its job handle."""
        ...

    def batch_transfer(self, file: Any, *, source: str, to: str, **options: Any) -> Any:
        """Queue a batch transfer; returns its job handle."""
        ...

    def mass_transfer(
        self, *, source: str, to: str, start: Any, end: Any, filters: Any, **options: Any
    ) -> Any:
        """Queue a mass transfer; returns its job handle."""
        ...

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
    ) -> Any:
        """Pseudonymize local files and store them to a node; returns an UploadResult."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class Workbench:
    """Entry point to nodes (and, with later issues, queries, transfers and jobs).

    Create it with :func:`connect`. It is cheap to hold for a whole notebook session.
    """

    def __init__(
        self, settings: Settings, database: Database, access: Access | None = None
    ) -> None:
        from .access.sync import sign_in  # SQLAlchemy: not on the remote client's path

        self.settings = settings
        self.database = database
        self._live_nodes: dict[str, tuple[NodeSpec, Node]] = {}
        # Never unchecked: without an explicit Access the caller's identity is resolved.
        self.access = (
            access
            if access is not None
            else sign_in(database, resolve_identity(), embedded=settings.is_embedded_database)
        )

    @property
    def user(self) -> str:
        """The name of the user this workbench acts for."""
        return self.access.user

    def __repr__(self) -> str:
        return f"<Workbench user={self.user!r} database={self.database.url_for_display!r}>"

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self.database.session() as session:
            yield session

    # -- nodes ------------------------------------------------------------------------
    def node_specs(self) -> list[NodeSpec]:
        """The nodes (servers and folders) this user may use, sorted by name."""
        from .store import nodes as node_store

        visible = set(self.access.visible_nodes())
        with self._session() as session:
            return [s for s in node_store.list_nodes(session) if s.name in visible]

    def node_spec(self, name: str) -> NodeSpec:
        """The stored description of one node (raises NotFound or NodeAccessDenied)."""
        from .store import nodes as node_store

        self.access.require_node(name, action="node.read")
        with self._session() as session:
            return node_store.get_node(session, name)

    def node(self, name: str) -> Node:
        """A live node object for ``name``: echo, probe and find on it.

        Every call on it checks this user's role on the node and is audited.
        """
        from .access.guarded import GuardedNode
        from .dicom.node import open_node

        spec = self.node_spec(name)
        # One live node per server and spec: its association pool is what bounds the
        # concurrent associations to the server, so two objects would double the bound.
        cached = self._live_nodes.get(name)
        if cached is None or cached[0] != spec:
            if cached is not None:
                cached[1].close()
            cached = self._live_nodes[name] = (spec, open_node(spec, self.settings))
        return GuardedNode(cached[1], self.access)

    def close(self) -> None:
        """Release the associations and HTTP connections of the nodes opened so far."""
        for _, live in self._live_nodes.values():
            live.close()
        self._live_nodes.clear()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_server(
        self,
        name: str,
        *,
        ae_title: str,
        host: str,
        port: int,
        dicomweb_url: str | None = None,
        capabilities: Capabilities | None = None,
        **options: Any,
    ) -> ServerSpec:
        """Register a DICOM server; ``options`` are further :class:`ServerSpec` fields.

        Without explicit capabilities the server is assumed to answer C-ECHO and
        study-root C-FIND (and QIDO/WADO/STOW when a DICOMweb URL is given) until
        :meth:`probe` measures what it really supports.
        """
        from .store import nodes as node_store

        self.access.require(Permission.ADMIN, action="node.add", node=name)
        if capabilities is None:
            web = dicomweb_url is not None
            capabilities = Capabilities(qido=web, wado=web, stow=web)
        try:
            spec = ServerSpec(
                name=name,
                ae_title=ae_title,
                host=host,
                port=port,
                dicomweb_root_url=dicomweb_url,
                capabilities=capabilities,
                **options,
            )
        except TypeError as exc:
            raise InputError(f"server {name!r}: {exc}") from exc
        audit = self.access.audited("node.add", node=name, details={"kind": "server"})
        with audit, self._session() as session:
            node_store.add_server(session, spec)
        return spec

    def add_folder(
        self,
        name: str,
        path: str | Path,
        *,
        quota_gb: float | None = None,
        warn_size_gb: float | None = None,
    ) -> FolderSpec:
        """Register a folder as a source or destination (the path is made absolute)."""
        from .store import nodes as node_store

        self.access.require(Permission.ADMIN, action="node.add", node=name)
        try:
            absolute = Path(path).expanduser().resolve()
        except (ValueError, OSError, RuntimeError) as exc:
            raise InputError(f"folder {name!r}: path is not usable: {exc}") from exc
        spec = FolderSpec(
            name=name,
            path=absolute,
            quota_gb=quota_gb,
            warn_size_gb=warn_size_gb,
        )
        audit = self.access.audited("node.add", node=name, details={"kind": "folder"})
        with audit, self._session() as session:
            node_store.add_folder(session, spec)
        return spec

    def remove_node(self, name: str) -> None:
        """Unregister a node (raises NotFound)."""
        from .store import nodes as node_store

        self.access.require(Permission.ADMIN, action="node.remove", node=name)
        with self.access.audited("node.remove", node=name), self._session() as session:
            node_store.remove_node(session, name)

    def echo(self, name: str) -> None:
        """C-ECHO (or the folder/DICOMweb equivalent); raises a NodeError on failure."""
        self.node(name).echo()  # the guarded node checks and audits

    def probe(self, name: str) -> Capabilities:
        """Measure what a node really supports and store the result."""
        from .dicom.node import open_node
        from .store import nodes as node_store

        self.access.require(Permission.ADMIN, action="node.probe", node=name)
        with self.access.audited("node.probe", node=name):
            # A node of its own, closed at once: probing must not leave associations open.
            with closing(open_node(self.node_spec(name), self.settings)) as node:
                capabilities = node.probe()
            with self._session() as session:
                node_store.save_capabilities(session, name, capabilities)
        return capabilities

    # -- sandbox PACS -----------------------------------------------------------------
    def start_sandbox(self, *, allow_get: bool = True) -> SandboxStatus:
        """Start the embedded sandbox PACS (if needed) and register it as node SANDBOX.

        Its C-MOVE destinations are the workbench's own receiver and every registered
        DIMSE server, so that moves out of the sandbox work like out of a real PACS.
        """
        from .store import nodes as node_store

        self.access.require(Permission.ADMIN, action="sandbox.start", node=SANDBOX_NODE)
        from .sandbox import process as sandbox

        status = sandbox.start_background(
            self.settings, allow_get=allow_get, peers=self._move_destinations()
        )
        spec = ServerSpec(
            name=SANDBOX_NODE,
            ae_title=status.ae_title,
            host=status.host,
            port=status.port,
            capabilities=Capabilities(
                patient_root_find=True,
                study_root_find=True,
                patient_root_get=allow_get,
                study_root_get=allow_get,
                patient_root_move=True,
                study_root_move=True,
                store=True,
            ),
        )
        with self._session() as session:
            existing = {s.name: s for s in node_store.list_nodes(session)}.get(SANDBOX_NODE)
            if existing != spec:
                if existing is not None:
                    node_store.remove_node(session, SANDBOX_NODE)
                node_store.add_server(session, spec)
        return status

    def stop_sandbox(self) -> bool:
        """Stop the sandbox PACS; False if it was not running. Its registration stays."""
        self.access.require(Permission.ADMIN, action="sandbox.stop", node=SANDBOX_NODE)
        from .jobs.local import stop_worker
        from .sandbox import process as sandbox

        stop_worker(self.settings)  # the local job worker goes with it (tasks stay PENDING)
        return sandbox.stop_background(self.settings)

    def sandbox_status(self) -> SandboxStatus | None:
        """State of the sandbox PACS, or None if it was never started here."""
        from .sandbox import process as sandbox

        return sandbox.status(self.settings)

    # -- jobs (each job kind checks its permissions in adit_workbench.jobs) -------------
    @cached_property
    def jobs(self) -> JobManager:
        """This user's jobs: ``list()``, ``[id]``, ``cancel``, ``resume``, ``retry`` …"""
        from .jobs import JobManager

        return JobManager(self.database, self.access, self.settings)

    def transfer(
        self,
        studies: Any,
        *,
        to: str,
        source: str | None = None,
        pseudonym: str | None = None,
        **options: Any,
    ) -> JobHandle:
        """Transfer studies or series (query results, UIDs or dicts) to node ``to``.

        ``source`` defaults to the node the results came from. Options: ``pseudonymize``,
        ``urgent``, ``trial_protocol_id``, ``trial_protocol_name``, ``project_name``,
        ``deid_options``, ``archive_password``, ``convert_to_nifti``, ``send_finished_mail``.
        Returns the queued job (``.wait()`` shows its progress).
        """
        from .jobs.kinds import selective_transfer

        if source is None:
            source = _source_of(studies)
        return selective_transfer(
            self.jobs, studies, source=source, destination=to, pseudonym=pseudonym, **options
        )

    def batch_query(self, file: Any, *, source: str, **options: Any) -> JobHandle:
        """Query ``source`` for each row of a batch file (.csv/.xlsx, ADIT's columns).

        Every invalid row is reported at once (BatchFileError) and nothing is queued.
        """
        from .jobs.kinds import batch_query

        return batch_query(self.jobs, file, source=source, **options)

    def batch_transfer(self, file: Any, *, source: str, to: str, **options: Any) -> JobHandle:
        """Transfer the studies of a batch file (PatientID, StudyInstanceUID,
        SeriesInstanceUID, Pseudonym) from ``source`` to ``to``; one task per study."""
        from .jobs.kinds import batch_transfer

        return batch_transfer(self.jobs, file, source=source, destination=to, **options)

    def mass_transfer(
        self, *, source: str, to: str, start: Any, end: Any, filters: Any, **options: Any
    ) -> JobHandle:
        """Every series from ``start`` to ``end`` matching ``filters`` (a list, JSON text
        or a JSON file), one task per day (``granularity="weekly"``: per week)."""
        from .jobs.kinds import mass_transfer

        return mass_transfer(
            self.jobs, source=source, destination=to, start=start, end=end, filters=filters,
            **options,
        )  # fmt: skip

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
        """Pseudonymize local DICOM files and store them to node ``destination``.

        ``files`` is a folder (every file below it) or an iterable of ``(name, bytes or
        path)``. The pseudonymization is a transfer job's for the same project and
        pseudonym (same UIDs, dates, pseudonym). Malformed and non-DICOM files are
        refused by name and the rest go through; the result counts both::

            wb.upload("scans/", destination="RESEARCH", pseudonym="SUBJ-01")
        """
        from .jobs.upload import iter_folder, upload_files

        items = iter_folder(files) if isinstance(files, str | Path) else files
        return upload_files(
            self.access, self.database, self.settings, items,
            destination=destination, pseudonym=pseudonym,
            trial_protocol_id=trial_protocol_id, trial_protocol_name=trial_protocol_name,
            project_name=project_name, deid_options=_option_names(deid_options), via=via,
        )  # fmt: skip

    # -- de-identification --------------------------------------------------------------
    def pseudonymizer(
        self,
        *,
        profile: Any = None,
        project: str | None = None,
        pseudonym: str | None = None,
        options: Any = (),
        trial_id: str | None = None,
        trial_name: str | None = None,
    ) -> Pseudonymizer:
        """The pseudonymizer a transfer job of ``project`` applies, for local data.

        Same key (the site's master secret and the project name; no name means
        ``"default"``, as for jobs) and same profile, so that a patient pseudonymized here
        gets the pseudonym, UIDs and date shift a job of the project gives them::

            p = wb.pseudonymizer(project="LUNG-01")
            p(dataset)                       # in place; copy first to keep the original
            p.explain(dataset)               # what would change, and why a file is refused
            pseudonymize_folder("in", "out", p)

        ``profile`` is ``"basic"`` (default, what jobs apply with their ``options``),
        ``"adit"`` (ADIT's preset) or a :class:`~adit_workbench.deid.Profile`; ``options``
        adds de-identification options (``"retain-uids"``, ``"clean-descriptors"`` …).
        The key can recompute any patient's pseudonym, so it is handed only to users who
        may fetch originals (a source role on some node); every hand-out is audited.
        """
        from .access.permissions import NodeRole
        from .deid.project import project_pseudonymizer
        from .errors import PermissionDenied

        details = {"project": project or "default"}
        if not self.access.visible_nodes(NodeRole.SOURCE):
            self.access.audit("deid.pseudonymizer", details=details, outcome="denied")
            raise PermissionDenied(
                f"user {self.user!r} may not pseudonymize locally: the project key goes only "
                "to users who may fetch originals (a source role on some node)"
            )
        with self.access.audited("deid.pseudonymizer", details=details):
            return project_pseudonymizer(
                self.settings,
                project=project,
                profile=profile,
                pseudonym=pseudonym,
                options=options,
                trial_id=trial_id,
                trial_name=trial_name,
            )

    def _move_destinations(self) -> Mapping[str, tuple[str, int]]:
        peers: dict[str, tuple[str, int]] = {
            self.settings.ae_title: (self.settings.receiver_host, self.settings.receiver_port)
        }
        for spec in self.node_specs():
            if isinstance(spec, ServerSpec) and spec.name != SANDBOX_NODE:
                peers.setdefault(spec.ae_title, (spec.host, spec.port))
        return peers


if TYPE_CHECKING:  # mypy checks that the local workbench has the whole shared API
    _IMPLEMENTS: type[WorkbenchAPI] = Workbench


def _option_names(options: Any) -> list[str]:
    """De-identification options as names (strings, or Option flags, maybe combined)."""
    if isinstance(options, str):
        return [options]
    names: list[str] = []
    for option in options or ():
        if isinstance(option, str):
            names.append(option)
        else:
            names.extend(str(m.name) for m in option if m.name)
    return names


def _source_of(studies: Any) -> str:
    """The node query results came from (they remember it; so does ``Results.df``)."""
    if hasattr(studies, "attrs") and hasattr(studies, "columns"):  # a DataFrame
        node = studies.attrs.get("node")
        if isinstance(node, str) and node:
            return node
        raise InputError("give source=NODE: this DataFrame does not say which node it came from")
    items = [studies] if hasattr(studies, "study_uid") else list(studies)
    node = getattr(items[0], "node", None) if items else None
    name = getattr(node, "name", None)
    if not isinstance(name, str):
        raise InputError("give source=NODE: the studies do not say which node they came from")
    return name


def connect(settings: Settings | None = None) -> Workbench | RemoteWorkbench:
    """Open the workbench: a client of the workbench service, or the embedded one.

    Inside a JupyterHub user server (its token, and the hub's ``workbench`` service or
    ``ADIT_WB_SERVICE_URL``), or wherever ``ADIT_WB_SERVICE_URL`` and
    ``ADIT_WB_API_TOKEN`` are set, the answer is a
    :class:`~adit_workbench.remote.RemoteWorkbench`: it never opens a database, reads the
    secret or connects to a PACS. Otherwise it is :func:`connect_local`'s.

    Parameters
    ----------
    settings:
        Settings to use; by default read from the environment (``ADIT_WB_*``).
    """
    from .remote.discover import service_address

    settings = settings or get_settings()
    address = service_address(settings)
    if address is not None:
        from .remote.workbench import RemoteWorkbench

        return RemoteWorkbench(*address, settings=settings)
    return connect_local(settings)


def connect_local(settings: Settings | None = None) -> Workbench:
    """The local workbench: settings, database (an embedded one is upgraded automatically).

    This is what the service itself, the CLI and embedded single-user mode run.
    """
    from .access.sync import sign_in
    from .store import open_database

    settings = settings or get_settings()
    database = open_database(settings)
    # Identity first: inside a hub this verifies the user and mirrors their hub groups.
    access = sign_in(database, resolve_identity(), embedded=settings.is_embedded_database)
    return Workbench(settings, database, access)
