"""Tracking server under concurrent writers: ``python -m bench tracking``.

A throwaway PostgreSQL (Debian's binaries, as tests/integration/conftest.py starts it) backs
two servers in turn: ``mlflow_server/entrypoint.sh`` (the deployed settings) and a bare
``mlflow server`` with the same number of workers. At 1, 8 and 32 concurrent writers (threads,
one run each) every writer sends ``log_batch`` requests of one epoch (8 metrics) and then
``runs/search`` requests (the experiment's runs, 100 per page) straight over HTTP, so the
client adds as little as it can. Requests/s is requests over the phase's wall time; p50/p95
are per-request latencies. Sizes are small on purpose (BATCHES, SEARCHES) so the whole
bench takes a few minutes on a 2-core machine (smoke size: the entrypoint.sh server only, 1 and 4
writers, 8 log_batch and 4 runs/search requests per level).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from bench import size
from bench.report_bench import free_port, mlflow_server

LEVELS = size((1, 8, 32), (1, 4))
BATCHES = size(96, 8)  # log_batch requests per level, spread over the writers
SEARCHES = size(48, 4)  # runs/search requests per level
METRICS_PER_BATCH = 8
# (label, started through entrypoint.sh); the smoke run starts the deployed one only (the
# report benchmark's smoke run starts a bare one).
DEPLOYED, BARE = ("entrypoint.sh", True), ("bare mlflow server", False)
SERVERS = size((DEPLOYED, BARE), (DEPLOYED,))
SERVER_WORKERS = size(2, 1)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL database on 127.0.0.1; yields its SQLAlchemy URI."""
    from tests.integration.conftest import find_postgres_bindir

    bindir = find_postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
    user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if user:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    data = root / "data"

    def run(*argv: str) -> None:
        subprocess.run([*user, *argv], check=True, capture_output=True, cwd=root, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "--no-sync")
    options = f"-h 127.0.0.1 -p {port} -k {root} -F -c fsync=off -c max_connections=200"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-o",
        options,
        "-w",
        "start",
    )
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _api(session: requests.Session, url: str, path: str, body: dict) -> dict:
    response = session.post(f"{url}/api/2.0/mlflow/{path}", json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def _phase(url: str, run_ids: list[str], experiment_id: str, kind: str, total: int) -> dict:
    """Runs ``total`` requests of one kind spread over one thread per run."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def writer(index: int, run_id: str) -> None:
        session = requests.Session()
        for n in range(index, total, len(run_ids)):
            if kind == "log_batch":
                now = int(time.time() * 1000)
                body = {
                    "run_id": run_id,
                    "metrics": [
                        {"key": f"m{i}", "value": n + i, "timestamp": now, "step": n}
                        for i in range(METRICS_PER_BATCH)
                    ],
                }
                path = "runs/log-batch"
            else:
                body = {"experiment_ids": [experiment_id], "max_results": 100}
                path = "runs/search"
            started = time.perf_counter()
            try:
                _api(session, url, path, body)
            except requests.RequestException as err:
                with lock:
                    errors.append(repr(err))
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=writer, args=(i, r)) for i, r in enumerate(run_ids)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * q[18],
        "errors": len(errors),
    }


def measure(url: str, name: str) -> list[dict]:
    """log_batch, then runs/search, at each concurrency level against one server."""
    session = requests.Session()
    experiment_id = _api(session, url, "experiments/create", {"name": name})["experiment_id"]
    rows = []
    for level in LEVELS:
        run_ids = [
            _api(session, url, "runs/create", {"experiment_id": experiment_id})["run"]["info"][
                "run_id"
            ]
            for _ in range(level)
        ]
        for kind, total in (("log_batch", BATCHES), ("runs/search", SEARCHES)):
            rows.append(
                {
                    "writers": level,
                    "request": kind,
                    **_phase(url, run_ids, experiment_id, kind, total),
                }
            )
    return rows


def main() -> list[dict]:
    """Runs the bench and prints a Markdown table."""
    rows = []
    started = time.monotonic()
    with postgres() as store, tempfile.TemporaryDirectory() as tmp:
        for label, as_deployed in SERVERS:
            workdir = Path(tmp) / label.replace(" ", "-")
            workdir.mkdir()
            with mlflow_server(store, workdir, SERVER_WORKERS, as_deployed=as_deployed) as url:
                for row in measure(url, f"bench-{label}-{time.time_ns()}"):
                    rows.append({"server": label, **row})
    print("| server | writers | request | requests/s | p50 ms | p95 ms | errors |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['server']} | {r['writers']} | {r['request']} | {r['requests_per_s']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['errors']} |"
        )
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
