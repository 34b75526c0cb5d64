"""``python -m adit_workbench.sandbox serve``: run the sandbox PACS in the foreground.

:func:`adit_workbench.sandbox.start_background` spawns this as a detached process; it
can also be run by hand. Options left out are taken from the settings (``ADIT_WB_*``).
The process seeds synthetic patients into an empty archive before it starts listening,
so that a successful C-ECHO means the data is there, and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import pynetdicom._config

from ..config import get_settings
from .pacs import SandboxPacs

log = logging.getLogger("adit_workbench.sandbox")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m adit_workbench.sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the sandbox PACS until SIGTERM")
    serve.add_argument("--root", type=Path, help="archive folder (default: <data dir>/sandbox)")
    serve.add_argument("--ae-title", help="AE title (default: settings.sandbox_ae_title)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=int, help="port (default: settings.sandbox_port)")
    serve.add_argument("--patients", type=int, help="synthetic patients for an empty archive")
    serve.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    serve.add_argument("--no-get", action="store_true", help="refuse C-GET (0x0124)")
    serve.add_argument("--no-move", action="store_true", help="refuse C-MOVE")
    serve.add_argument("--no-patient-root", action="store_true", help="no Patient Root Q/R")
    serve.add_argument(
        "--state-file", type=Path, help="JSON file whose 'peers' are re-read on every C-MOVE"
    )
    serve.add_argument(
        "--ready-file", type=Path, help="file to write this process's pid to once listening"
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    """Run the server until a termination signal arrives; returns the exit code."""
    settings = get_settings()
    root = args.root or settings.data_dir / "sandbox"
    peers: dict[str, tuple[str, int]] = {}
    if args.state_file is not None and args.state_file.exists():
        state = json.loads(args.state_file.read_text())
        peers = {k: (str(v[0]), int(v[1])) for k, v in state.get("peers", {}).items()}
    pacs = SandboxPacs(
        root,
        ae_title=args.ae_title or settings.sandbox_ae_title,
        host=args.host,
        port=settings.sandbox_port if args.port is None else args.port,
        peers=peers,
        allow_get=not args.no_get,
        allow_move=not args.no_move,
        allow_patient_root=not args.no_patient_root,
        peers_file=args.state_file,
    )
    patients = settings.sandbox_patients if args.patients is None else args.patients
    added = pacs.seed(patients, seed=args.seed)
    if added:
        log.info("seeded %d synthetic instances", added)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pacs.start()
    if args.ready_file is not None:
        # Proves to the starter that *this* process owns the port, not some other server.
        args.ready_file.write_text(f"{os.getpid()}\n")
    log.info("serving %s on %s:%d: %s", pacs.ae_title, pacs.host, pacs.port, pacs.count())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        pacs.close()
        log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m adit_workbench.sandbox``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # pynetdicom logs whole request identifiers (patient names, IDs) at INFO: keep them out.
    pynetdicom._config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom._config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
