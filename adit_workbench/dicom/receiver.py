"""The workbench's Store SCP: where C-MOVE sends instances, routed through a spool folder.

Design: routing goes through the file system, not through memory. Each instance that
arrives is written (temporary name, then rename) to

    <spool>/<our AE title>/<StudyInstanceUID>/<SOPInstanceUID>.dcm

and the C-STORE is answered only after the rename, so an acknowledged instance is on
disk. The AE title is always the receiver's own (a request calling another one is
rejected), so what a peer sends never chooses a folder. Only known nodes may store:
``allow`` says which (calling AE title, address) pairs; by default the nodes a C-MOVE
of this process runs against (:func:`expect_peer`, used by
:func:`~.retrieve.iter_cmove`), for a standalone receiver its ``--allow AE@HOST``
options. The transfer that issued the C-MOVE knows its study and the SOP Instance UIDs
it expects; it *claims* matching files by renaming them into a private folder
(:func:`~.retrieve.iter_cmove`). Consequences:

* receiver and transfer may be separate processes, or separate machines sharing the
  spool folder (NFS): run ``python -m adit_workbench.dicom.receiver`` once per site and
  point every worker's data dir (or ``spool``) at the shared folder;
* two transfers of different studies never see each other's files; two concurrent
  transfers of the *same* study each get all of it when the receiver runs in their
  process (below); with a receiver elsewhere they split its files between them, and
  each one's verification then re-moves what it lacks (correct, if wasteful);
* instances that arrive after their transfer gave up stay spooled; a re-run claims
  them without moving them again, and :func:`expire_spool` deletes those left longer
  than ``spool_max_age_hours`` (when a receiver starts, and hourly while it runs).

Two C-MOVEs of the *same* study running at once in one process would find their
instances in one folder. So each C-MOVE of this process gets a Message ID no other
running one has (:func:`expect_move`), which the PACS repeats as Move Originator
Message ID in every C-STORE it sends for it; a receiver in this process puts those
instances in the move's own subfolder (:func:`move_spool`), and each transfer gets
every instance it asked for. Instances naming no move running here (another tool's, a
move that gave up, a receiver in another process: message IDs are unique only within
a process) go to the study folder as before.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from pydicom import dcmread

from . import upperlayer as ul
from .part10 import Malformed, Part10, Unsupported, element_end, header, value_text
from .paths import uid_component
from .storescp import PeerCheck, StoreServer

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "Receiver",
    "expect_move",
    "expect_peer",
    "expected_peer",
    "expire_spool",
    "move_spool",
    "shared_receiver",
    "spool_dir",
    "study_spool",
]

log = logging.getLogger(__name__)

_OUT_OF_RESOURCES = 0xA700
_ROUTING = ["StudyInstanceUID", "SOPInstanceUID"]
# C-STORE-RQ command elements naming the C-MOVE it belongs to (PS3.7 9.3.1.1)
_MOVE_ORIGINATOR, _MOVE_MESSAGE_ID = 0x1030, 0x1031
_CANNOT_UNDERSTAND = 0xC000
_SOP_UID, _STUDY_UID = 0x00080018, 0x0020000D
#: Big endian and deflated data sets: read whole (pydicom).
_NOT_SCANNED = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})
_IOV_MAX = 512
SPOOL_DIR_NAME = "receiver-spool"


def _safe(uid: str) -> str:
    """A UID as a path part; anything that is not a UID cannot name a folder."""
    text = str(uid).strip().rstrip("\0")
    if not text or not all(c.isdigit() or c == "." for c in text) or text.strip(".") != text:
        return "_invalid"
    return text


def spool_dir(settings: Settings) -> Path:
    """The default spool folder: ``receiver-spool`` in the data dir."""
    return settings.data_dir / SPOOL_DIR_NAME


def study_spool(spool: Path, ae_title: str, study_uid: str) -> Path:
    """Where the receiver puts the instances of one study moved to ``ae_title``."""
    ae = "".join(c if c.isalnum() or c in "-_" else "_" for c in ae_title.strip()) or "_"
    return spool / ae / uid_component(study_uid, "_invalid")  # distinct per study, safe


# -- who may store: the nodes this process is moving from ---------------------------
_expected: dict[tuple[str, str], int] = {}
_expected_lock = threading.Lock()


def _addresses(host: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}


@contextlib.contextmanager
def expect_peer(ae_title: str, host: str) -> Iterator[None]:
    """While the block runs, :func:`expected_peer` lets ``ae_title`` at ``host`` store."""
    keys = [(ae_title.strip(), address) for address in _addresses(host)]
    with _expected_lock:
        for key in keys:
            _expected[key] = _expected.get(key, 0) + 1
    try:
        yield
    finally:
        with _expected_lock:
            for key in keys:
                _expected[key] -= 1
                if not _expected[key]:
                    del _expected[key]


# -- which C-MOVEs run here: their instances get a folder each -----------------------
_moves: set[int] = set()
_move_ids = itertools.count(int.from_bytes(os.urandom(2), "big"))


def move_spool(spool: Path, ae_title: str, study_uid: str, message_id: int) -> Path:
    """Where the receiver puts the instances of the C-MOVE with ``message_id``."""
    return study_spool(spool, ae_title, study_uid) / f"move-{message_id}"


@contextlib.contextmanager
def expect_move() -> Iterator[int]:
    """A C-MOVE Message ID (1-65535) no other running C-MOVE of this process has; while
    the block runs, a receiver here routes that move's instances to :func:`move_spool`."""
    with _expected_lock:
        while (message_id := next(_move_ids) % 0xFFFF + 1) in _moves:
            pass
        _moves.add(message_id)
    try:
        yield message_id
    finally:
        with _expected_lock:
            _moves.discard(message_id)


def _running_move(message_id: int) -> bool:
    with _expected_lock:
        return message_id in _moves


def expected_peer(calling_ae: str, address: str) -> bool:
    """The receiver's default check: a node a C-MOVE of this process runs against."""
    with _expected_lock:
        return (calling_ae.strip(), address) in _expected


def allow_list(entries: Iterable[str]) -> PeerCheck:
    """A check from ``AE@HOST`` entries (``AE@*``: from any address)."""
    allowed: set[tuple[str, str]] = set()
    for entry in entries:
        ae, _, host = entry.partition("@")
        if not ae or not host:
            raise ValueError(f"{entry!r}: expected AE@HOST")
        for address in {"*"} if host == "*" else _addresses(host):
            allowed.add((ae.strip(), address))

    def check(calling_ae: str, address: str) -> bool:
        key = calling_ae.strip()
        return (key, address) in allowed or (key, "*") in allowed

    return check


class Receiver:
    """A Store SCP that spools arriving instances per study, from known nodes only.

    Parameters
    ----------
    settings:
        AE title, host and port come from ``ae_title``, ``receiver_host`` and
        ``receiver_port`` unless given.
    spool:
        The spool folder (default :func:`spool_dir`).
    allow:
        Which ``(calling AE title, peer address)`` may store (default
        :func:`expected_peer`); None lets anyone.
    artim:
        Seconds a connecting peer has to send its whole association request.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        spool: Path | None = None,
        ae_title: str | None = None,
        host: str | None = None,
        port: int | None = None,
        allow: PeerCheck | None = expected_peer,
        artim: float | None = None,
    ) -> None:
        self.settings = settings
        self.allow = allow
        self.artim = settings.connect_timeout if artim is None else artim
        self.spool = Path(spool) if spool is not None else spool_dir(settings)
        self.ae_title = ae_title or settings.ae_title
        self.host = host or settings.receiver_host
        self.port = settings.receiver_port if port is None else port
        self.received = 0
        self._server: StoreServer | None = None
        self._lock = threading.Lock()
        # Temporary names: unique across receivers sharing a spool, no random per file.
        self._token = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._names = itertools.count()
        self._made: set[Path] = set()  # study folders made (a cache: see _create)

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> Self:
        """Listen (non-blocking); raises OSError if the port is taken."""
        self.spool.mkdir(parents=True, exist_ok=True)
        expire_spool(self.spool, self.settings.spool_max_age_hours * 3600)
        # Any number of senders: a PACS may open several associations for one move.
        self._server = StoreServer(
            self.host,
            self.port,
            None,
            on_parts=self._on_store,
            ae_title=self.ae_title,
            allow=self.allow,
            timeout=self.settings.network_timeout,
            artim=self.artim,
            max_associations=32,
        )
        self.port = self._server.port
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @property
    def running(self) -> bool:
        """Whether the receiver is listening."""
        return self._server is not None

    def __enter__(self) -> Self:
        return self.start() if not self.running else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- C-STORE ---------------------------------------------------------------------
    def _on_store(self, request: dict[int, bytes], syntax: str, parts: list[memoryview]) -> int:
        meta = ul.file_meta(request, syntax)
        try:
            study, sop = _routing(syntax, meta, parts)
        except Exception:  # undecodable: say so rather than store something unroutable
            return _CANNOT_UNDERSTAND
        if sop == "_invalid":
            return _CANNOT_UNDERSTAND
        move_id = ul.number(request, _MOVE_MESSAGE_ID)
        log.debug(
            "receiver: instance for a move by %s (message %s)",
            request.get(_MOVE_ORIGINATOR, b"").decode("ascii", "replace").strip() or "?",
            move_id,
        )
        if move_id > 0 and _running_move(move_id):
            folder = move_spool(self.spool, self.ae_title, study, move_id)
        else:
            folder = study_spool(self.spool, self.ae_title, study)
        tmp = folder / f".{self._token}-{next(self._names)}.part"
        try:
            try:
                handle = self._create(folder, tmp)
            except FileNotFoundError:  # made before, expired since
                self._made.discard(folder)
                handle = self._create(folder, tmp)
            try:
                # The fragments as they arrived: no joined copy of the instance.
                _write_all(handle, [meta, *parts])
            finally:
                os.close(handle)
            os.replace(tmp, folder / f"{sop}.dcm")
        except OSError:
            log.warning("receiver: cannot spool an instance (disk full or not writable?)")
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return _OUT_OF_RESOURCES
        with self._lock:
            self.received += 1
        return 0x0000

    def _create(self, folder: Path, path: Path) -> int:
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def _write_all(handle: int, chunks: list[Any]) -> None:
    """Write ``chunks`` in order with as few system calls as the kernel allows."""
    for start in range(0, len(chunks), _IOV_MAX):
        batch = [memoryview(chunk) for chunk in chunks[start : start + _IOV_MAX]]
        while batch:
            written = os.writev(handle, batch)
            if written <= 0:
                raise OSError("nothing written")
            while batch and written >= len(batch[0]):
                written -= len(batch.pop(0))
            if batch and written:
                batch[0] = batch[0][written:]


def _head_uids(data: memoryview, implicit: bool) -> tuple[str, str] | None:
    """``(StudyInstanceUID, SOPInstanceUID)`` from the elements that precede and are
    the Study Instance UID; None when the first fragment does not hold them readably
    (cut by the fragment's end, unsorted, not plain little endian): read it all then."""
    pos, end, last = 0, len(data), -1
    found: dict[int, str] = {}
    try:
        while pos < end and len(found) < 2:
            tag = header(data, pos, end, implicit)[0]
            if tag <= last or tag > _STUDY_UID:
                break
            last = tag
            start = pos
            pos = element_end(data, pos, end, implicit)[1]
            if tag in (_STUDY_UID, _SOP_UID):
                found[tag] = value_text(data[start:pos], implicit, b"")
    except (Malformed, Unsupported):
        return None
    if len(found) < 2:
        return None
    return found[_STUDY_UID], found[_SOP_UID]


def _routing(syntax: str, meta: bytes, parts: list[memoryview]) -> tuple[str, str]:
    """``(StudyInstanceUID, SOPInstanceUID as a file name)`` of an arriving instance:
    scanned from its first elements (reading the header with pydicom cost the receiver
    0.3 ms; scanning the whole data set 0.13 ms), else from all of it."""
    if parts and syntax not in _NOT_SCANNED:
        head = _head_uids(parts[0], syntax == ul.IMPLICIT)
        if head is not None:
            return head[0], _safe(head[1])
    data = b"".join([meta, *parts])
    try:
        scanned = Part10.parse(data)
        study, sop = scanned.text("StudyInstanceUID"), scanned.text("SOPInstanceUID")
    except Unsupported:  # big endian, deflated …: pydicom reads the header
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=_ROUTING)
        study = str(ds.get("StudyInstanceUID", "") or "")
        sop = str(ds.get("SOPInstanceUID", "") or "")
    return study, _safe(sop)


# -- one receiver per process, shared by the transfers running in it ----------------
_shared: dict[tuple[str, int], tuple[Receiver, int]] = {}
_shared_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child (a transfer worker) must not hold the receiver's sockets: if the
    parent died, the port would stay bound with nobody accepting, and every C-MOVE to it
    would fail until the orphan exits. Its C-MOVE Message IDs start elsewhere than the
    parent's: a receiver in the parent must not take the child's move for its own."""
    global _shared_lock, _expected_lock, _move_ids
    _shared_lock = threading.Lock()  # the parent may have held it while forking
    _expected_lock = threading.Lock()
    _move_ids = itertools.count(int.from_bytes(os.urandom(2), "big"))
    _moves.clear()
    for receiver, _ in _shared.values():
        if receiver._server is not None:
            receiver._server.forget()
        receiver._server = None
    _shared.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def expire_spool(spool: Path, max_age: float) -> int:
    """Delete spooled files older than ``max_age`` seconds and the folders they leave
    empty; return how many files went. Temporary files of a receiver still writing are
    young, so they stay."""
    cutoff = time.time() - max_age
    removed = 0
    for folder, _dirs, files in os.walk(spool, topdown=False):
        for name in files:
            path = Path(folder, name)
            with contextlib.suppress(FileNotFoundError):  # claimed meanwhile
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        if Path(folder) != spool:
            with contextlib.suppress(OSError):  # not empty
                os.rmdir(folder)
    if removed:
        log.info("receiver spool: deleted %d instance(s) older than %.0f h", removed,
                 max_age / 3600)  # fmt: skip
    return removed


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class shared_receiver:
    """Context manager: make sure a receiver spools for ``settings``; yield the spool.

    Starts one in this process when the port is free (shared by concurrent transfers,
    stopped when the last leaves); otherwise assumes another process (``python -m
    adit_workbench.dicom.receiver``) listens there and writes to the same spool.
    """

    def __init__(self, settings: Settings, spool: Path | None = None) -> None:
        self.settings = settings
        self.spool = Path(spool) if spool is not None else spool_dir(settings)
        self.key = (settings.receiver_host, settings.receiver_port)

    def __enter__(self) -> Path:
        with _shared_lock:
            held = _shared.get(self.key)
            if held is not None:
                _shared[self.key] = (held[0], held[1] + 1)
                return held[0].spool
            self.spool.mkdir(parents=True, exist_ok=True)
            if _port_taken(*self.key):
                log.info("receiver port in use: assuming an external receiver")
                return self.spool
            receiver = Receiver(self.settings, spool=self.spool).start()
            _shared[self.key] = (receiver, 1)
            return self.spool

    def __exit__(self, *exc_info: object) -> None:
        with _shared_lock:
            held = _shared.get(self.key)
            if held is None:
                return
            if held[1] <= 1:
                del _shared[self.key]
                held[0].stop()
            else:
                _shared[self.key] = (held[0], held[1] - 1)


def main(argv: list[str] | None = None) -> None:
    """Run a standalone receiver until interrupted (for scale-out set-ups)."""
    from ..config import get_settings

    parser = argparse.ArgumentParser(prog="python -m adit_workbench.dicom.receiver")
    parser.add_argument("--spool", type=Path, default=None, help="spool folder (shared)")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="AE@HOST",
        help="a node that may store here (repeat; HOST '*' for any address)",
    )
    parser.add_argument(
        "--allow-any", action="store_true", help="let any node store here (a closed network)"
    )
    args = parser.parse_args(argv)
    if not args.allow and not args.allow_any:
        parser.error("name the nodes that may store here (--allow AE@HOST) or --allow-any")
    try:
        allow = None if args.allow_any else allow_list(args.allow)
    except ValueError as exc:
        parser.error(str(exc))
    settings = get_settings()
    receiver = Receiver(settings, spool=args.spool, port=args.port, allow=allow).start()
    print(f"receiver {receiver.ae_title} on {receiver.host}:{receiver.port} -> {receiver.spool}")
    max_age = settings.spool_max_age_hours * 3600
    try:
        while not threading.Event().wait(3600):
            expire_spool(receiver.spool, max_age)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
