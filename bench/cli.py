"""Bench: start time of ``adit-workbench`` commands, as a ratio to a bare interpreter.

Run from the repository root::

    .venv/bin/python -m bench.cli [--runs 7]

Scripts call the command line in loops, so its fixed cost matters. Each command runs
``--runs`` times as a fresh process (``python -m adit_workbench …``, the console
script's code path) in a temporary embedded workbench (its own data dir; database,
bytecode and file cache warmed by a first, untimed run); the median wall time is
printed beside the median of ``python -c pass`` measured in the same run, and their
ratio. The machine is shared
and noisy: compare ratios, not seconds; the CPU time (user + system of the child)
suffers less from other processes than the wall time. The aim (issue 17): ``--help`` and
``nodes list`` within 0.4 s on these machines.

``nodes list`` opens the database through the facade (settings, SQLAlchemy, the
access layer): its floor is those imports, not the command line.

``--transfer`` also times ``adit-workbench transfer`` of a small synthetic study (20
instances of 64×64) from one folder node to another, the detached local worker already
running (the warm-up starts it; the bench stops it at the end). That time is the fixed
cost of a transfer: start, sign-in, the submit-time checks, queueing, the worker's
pick-up, and waiting for the outcome; moving 200 kB is a small part of it.

``--remote`` also times ``nodes list`` as a client of the workbench service, as in a hub
terminal: ``adit-workbench serve`` runs on the bench's embedded database, and the client
has only ``ADIT_WB_SERVICE_URL``, a token and an empty data dir of its own.

Where the time goes (CPU of ``python -c "import X"`` on these machines, bare interpreter
0.06 s): click 0.12, pydantic-settings (config) 0.27, SQLAlchemy ORM 0.45, the store's
models and access 0.72, pydicom 0.49, pandas 0.68, the remote package 1.5-1.7 (it pulls
in pandas, pydicom and SQLAlchemy). ``nodes list`` needs settings, the ORM and the
access layer, so its floor is about 0.8 s; ``transfer`` adds pydicom and pandas (the
latter only through ``dicom/results.py``).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: list[list[str]] = [
    ["--help"],
    ["nodes", "--help"],
    ["query", "--help"],
    ["nodes", "list"],
    ["config"],
]


def _time(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and median CPU (user + system) seconds of ``runs`` runs."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median)")
    parser.add_argument("--transfer", action="store_true", help="also time a small transfer")
    parser.add_argument(
        "--remote", action="store_true", help="also time commands as a client of the service"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as data:
        env = {**os.environ, "ADIT_WB_DATA_DIR": data}
        # An installed package has its bytecode cached; without it every run compiles
        # our modules again (this machine sets PYTHONDONTWRITEBYTECODE).
        for name in ("ADIT_WB_DATABASE_URL", "ADIT_WB_REDIS_URL", "PYTHONDONTWRITEBYTECODE"):
            env.pop(name, None)
        cli = [sys.executable, "-m", "adit_workbench"]
        for command in COMMANDS:  # warm up: database, bytecode, file cache
            subprocess.run([*cli, *command], env=env, capture_output=True, check=True)
        bare, bare_cpu = _time([sys.executable, "-c", "pass"], env, args.runs)
        print(f"{'':<28} {'wall':>8} {'ratio':>6} {'cpu':>8} {'ratio':>6}")
        print(f"{'python -c pass':<28} {bare:7.3f}s {1:5.1f}x {bare_cpu:7.3f}s {1:5.1f}x")
        for command in COMMANDS:
            took, cpu = _time([*cli, *command], env, args.runs)
            label = "adit-workbench " + " ".join(command)
            _row(label, took, cpu, bare, bare_cpu)
        if args.transfer:
            _bench_transfer(cli, env, Path(data), args.runs, bare, bare_cpu)
        if args.remote:
            _bench_remote(cli, env, args.runs, bare, bare_cpu)


def _row(label: str, took: float, cpu: float, bare: float, bare_cpu: float) -> None:
    print(
        f"{label:<28} {took:7.3f}s {took / bare:5.1f}x "
        f"{cpu:7.3f}s {cpu / max(bare_cpu, 1e-3):5.1f}x"
    )


def _bench_transfer(
    cli: list[str], env: dict[str, str], data: Path, runs: int, bare: float, bare_cpu: float
) -> None:
    """Time ``transfer`` folder → folder of one small study (see the module docstring)."""
    from adit_workbench.sandbox.synthetic import generate

    source, target = data / "src", data / "out"
    target.mkdir()
    first = generate(source, patients=1, studies=1, series=2, instances=10)[0]
    study = first.parent.parent.name
    run = [*cli, "nodes"]
    subprocess.run(
        [*run, "add-folder", "SRC", str(source)], env=env, check=True, capture_output=True
    )
    subprocess.run(
        [*run, "add-folder", "OUT", str(target)], env=env, check=True, capture_output=True
    )
    argv = [*cli, "transfer", "--from", "SRC", "--to", "OUT", "--study", study, "--pseudonym"]
    try:
        subprocess.run([*argv, "WARMUP"], env=env, check=True, capture_output=True)
        # A new pseudonym each run: every run moves the 20 instances.
        walls, cpus = [], []
        for i in range(runs):
            took, cpu = _time([*argv, f"RUN{i}"], env, 1)
            walls.append(took)
            cpus.append(cpu)
        _row(
            "adit-workbench transfer (20)",
            statistics.median(walls),
            statistics.median(cpus),
            bare,
            bare_cpu,
        )
    finally:
        subprocess.run([*cli, "worker", "stop"], env=env, capture_output=True)


def _bench_remote(
    cli: list[str], env: dict[str, str], runs: int, bare: float, bare_cpu: float
) -> None:
    """Time commands as a client of ``adit-workbench serve`` (see the module docstring)."""
    import urllib.request

    made = subprocess.run(
        [*cli, "tokens", "create", "--expires", "1", "--description", "bench"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    token = made.stdout.strip()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}api/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or service.poll() is not None:
                    raise SystemExit("the workbench service did not start") from None
                time.sleep(0.5)
        with tempfile.TemporaryDirectory(prefix="bench-cli-client-") as home:
            client = {k: v for k, v in env.items() if not k.startswith("ADIT_WB_")}
            client.update(ADIT_WB_DATA_DIR=home, ADIT_WB_SERVICE_URL=url, ADIT_WB_API_TOKEN=token)
            for command in (["--help"], ["nodes", "list"]):
                subprocess.run([*cli, *command], env=client, capture_output=True, check=True)
                took, cpu = _time([*cli, *command], client, runs)
                _row("remote: " + " ".join(command), took, cpu, bare, bare_cpu)
    finally:
        service.terminate()
        service.wait(30)


if __name__ == "__main__":
    main()
