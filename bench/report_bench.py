"""Report generation against a local ``mlflow server``: bulk queries against the per-run approach.

Populates a SQLite-backed store with RUNS runs x HISTORY_METRICS per-epoch metrics x EPOCHS
epochs (plus the summary metrics, params and tags the trainer logs), serves it on 127.0.0.1
through ``mlflow_server/entrypoint.sh`` (the server as deployed: 2 workers, GC thresholds
raised, job runner off), and renders the full report over HTTP (after one warm-up render):

* bulk (what ``write_report`` does), RENDERS times: paged ``search_runs`` + the
  ``get-history-bulk`` endpoint (100 runs per request per metric) for the metrics the pages
  draw (loss, val_loss and the ranking metric's curve for every run; every history metric for
  the runs shown in detail);
* per-run (the seed's ``MLflowService`` shape), once: the same ``search_runs`` listing, then
  one ``get_run`` plus one ``get_metric_history`` per history metric for every run.

Then, for reference, the bulk render RENDERS times against a bare ``mlflow server`` with
mlflow's own defaults (same store, same 2 workers).

Every HTTP request the client sends goes through ``requests.Session.request``, which is
wrapped in a counter. Both variants render the same pages, so the difference is the queries.

Run: ``python -m bench report`` (or ``make bench``); options via environment variables
REPORT_BENCH_RUNS, REPORT_BENCH_EPOCHS, REPORT_BENCH_RENDERS (smoke size: 10 runs x 3 epochs,
1 render, no warm-up render).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from bench import size
from trainer import contract

EXPERIMENT = "report-bench"
RUNS = int(os.environ.get("REPORT_BENCH_RUNS", size("1000", "10")))
EPOCHS = int(os.environ.get("REPORT_BENCH_EPOCHS", size("20", "3")))
# The five per-epoch metrics of the contract plus three more a trainer may log per epoch.
HISTORY_METRICS = [*contract.history_metrics(), "regularization_loss", "total_loss", "lr"]
FEATURE_CONFIGS = [f"fc_{i}" for i in range(5)]
MODEL_CONFIGS = [f"mc_{i}" for i in range(4)]
SERVER_START_TIMEOUT_S = 120


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# As many server workers as mlflow_server/entrypoint.sh runs by default (MLFLOW_WORKERS=2);
# the smoke run's servers start one (each worker imports mlflow: seconds on 2 cores).
SERVER_WORKERS = size(2, 1)
ENTRYPOINT = Path(__file__).resolve().parent.parent / "mlflow_server" / "entrypoint.sh"


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str, workdir: Path, workers: int = SERVER_WORKERS, as_deployed: bool = True
) -> Iterator[str]:
    """Run an MLflow server on a free 127.0.0.1 port; yield its URL; stop it on exit.

    Args:
        backend_uri: Backend store URI (e.g. ``sqlite:///.../mlflow.db``).
        workdir: Folder for the artifact root and the server log.
        workers: uvicorn worker processes.
        as_deployed: Start it through ``mlflow_server/entrypoint.sh``, as the Cloud Run image
            does (job runner off, GC thresholds raised); False runs a bare ``mlflow server``
            with mlflow's own defaults.
    """
    port = free_port()
    log_path = workdir / f"mlflow-server-{port}.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if as_deployed:
        cmd = ["bash", str(ENTRYPOINT)]
        env.update(
            MLFLOW_BACKEND_STORE_URI=backend_uri,
            MLFLOW_ARTIFACT_ROOT=str(workdir / "artifacts"),
            HOST="127.0.0.1",
            PORT=str(port),
            MLFLOW_WORKERS=str(workers),
        )
    else:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_uri,
            "--default-artifact-root",
            str(workdir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.exceptions.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        # The server forks workers into its own session; stop exactly that group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


PROTOCOL = {
    contract.TAG_PROTOCOL_DATASET: "397884:0123456789abcdef",
    contract.TAG_PROTOCOL_SPLIT: "strict_time train<2011-10-01 eval<2011-11-01",
    contract.TAG_PROTOCOL_CATALOG: "3665",
    contract.TAG_PROTOCOL_EVALUATION: contract.EVALUATION_PROTOCOL_VERSION,
    contract.TAG_PROTOCOL_KEY: "a1b2c3d4e5f6",
}


def _with_ci(out: dict[str, float], key: str, value: float, half: float) -> None:
    out.update({key: value, contract.ci_low_key(key): value - half})
    out[contract.ci_high_key(key)] = value + half


def evaluation_figures(quality: float, best_val: float) -> tuple[dict[str, float], dict[str, str]]:
    """What an evaluation logs beyond the recalls (issue 23): intervals, lifts, slices, tags."""
    metrics: dict[str, float] = {}
    tags = {contract.TAG_BOOTSTRAP: "paired over 3000 buyers, 2000 resamples, seed 0", **PROTOCOL}
    base = {"popular": 0.162, "own_history": 0.304}
    for k in contract.RECALL_KS:
        model = quality * (k / 100) ** 0.4
        _with_ci(metrics, contract.test_recall_key(k), model, 0.012)
        _with_ci(metrics, contract.chosen_val_recall_key(k), best_val * (k / 100) ** 0.4, 0.012)
        for b, r in base.items():
            _with_ci(metrics, contract.baseline_recall_key(b, k), r * k / 100, 0.01)
            _with_ci(metrics, contract.lift_key(b, k), model - r * k / 100, 0.01)
            _with_ci(metrics, contract.relative_lift_key(b, k), model / (r * k / 100) - 1, 0.05)
            metrics[contract.lift_p_holm_key(b, k)] = 0.01
            tags[contract.verdict_tag(b, k)] = contract.VERDICT_BEATS
            for figure, value in zip(contract.BEYOND_FIGURES, (0.1, 400.0, 0.05), strict=True):
                metrics[contract.beyond_key(figure, k, b)] = value
        for figure, value in zip(contract.BEYOND_FIGURES, (0.3, 900.0, 0.2), strict=True):
            metrics[contract.beyond_key(figure, k)] = value
    for b in base:
        tags[contract.verdict_tag(b)] = contract.VERDICT_BEATS
    k = contract.SLICE_K
    for name, _, _ in contract.SLICES:
        metrics[contract.slice_pairs_key(name)] = 5000.0
        _with_ci(metrics, contract.slice_recall_key(name, k), quality, 0.02)
        for b, r in base.items():
            _with_ci(metrics, contract.slice_recall_key(name, k, b), r, 0.02)
            _with_ci(metrics, contract.slice_lift_key(name, b, k), quality - r, 0.02)
    return metrics, tags


def tag_ties(client, best_vals: dict[str, float]) -> None:
    """Tags the best TIE_CHECK_RUNS runs as the best-model step does (paired tie tags)."""
    ranked = sorted(best_vals, key=best_vals.get, reverse=True)[: contract.TIE_CHECK_RUNS]
    from mlflow.entities import RunTag

    lead = best_vals[ranked[0]]
    for run_id in ranked:
        diff = best_vals[run_id] - lead
        tags = {
            contract.TAG_BEST_RUN_ID: ranked[0],
            contract.TAG_TIED_WITH_BEST: "true" if diff > -0.01 else "false",
            contract.TAG_DIFF_VS_BEST: f"{diff:+.4f}",
            contract.TAG_DIFF_VS_BEST_CI: f"[{diff - 0.006:+.4f}, {diff + 0.006:+.4f}]",
            contract.TAG_TIE_TEST: "paired bootstrap over 3000 validation buyers, recall@100",
        }
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def run_payload(
    i: int, rng: random.Random, epochs: int, start: int
) -> tuple[str, list[tuple[str, float, int, int]], dict[str, str], dict[str, str], float]:
    """Run ``i`` of the benchmark: (name, metrics as (key, value, timestamp, step), params,
    tags, its rank value). What a training and its evaluation log: histories, summaries,
    test and baseline recalls with intervals, lifts, slices, beyond accuracy, verdicts and
    protocol tags."""
    fc, mc = FEATURE_CONFIGS[i % 5], MODEL_CONFIGS[(i // 5) % 4]
    quality = 0.15 + 0.02 * (i % 5) + 0.015 * ((i // 5) % 4) + rng.gauss(0, 0.01)
    metrics: list[tuple[str, float, int, int]] = []
    for key in HISTORY_METRICS:
        values = []
        for e in range(epochs):
            frac = (e + 1) / epochs
            if "loss" in key:
                v = 3.0 - quality * 3 * frac + rng.gauss(0, 0.01)
            elif key == "lr":
                v = 0.1 * (0.9**e)
            else:
                k = int(key.rsplit("_", 1)[-1])
                v = quality * frac * (k / 100) ** 0.4 + rng.gauss(0, 0.003)
            values.append(v)
            metrics.append((key, v, start + e, e))
        metrics.append((contract.final_key(key), values[-1], start, 0))
        best = min(values) if "loss" in key else max(values)
        metrics.append((contract.best_key(key), best, start, 0))
    metrics.append((contract.BEST_EPOCH, float(epochs - 1), start, 0))
    best_val = next(m[1] for m in metrics if m[0] == contract.DEFAULT_RANK_METRIC)
    figures, evaluation_tags = evaluation_figures(quality, best_val)
    metrics += [(key, value, start, 0) for key, value in figures.items()]
    params = {
        contract.PARAM_EPOCHS: str(epochs),
        contract.PARAM_BATCH_SIZE: "4096",
        contract.PARAM_LEARNING_RATE: str([0.05, 0.1, 0.2][i % 3]),
        contract.PARAM_OPTIMIZER: "adagrad",
        contract.PARAM_EMBEDDING_DIM: str([32, 64, 128][(i // 3) % 3]),
        contract.PARAM_FEATURE_CONFIG_ID: fc,
        contract.PARAM_MODEL_CONFIG_ID: mc,
        contract.PARAM_DATASET_ID: "online_retail",
        contract.PARAM_SEED: str(i // 20),
    }
    tags = {
        contract.TAG_FEATURE_CONFIG_NAME: fc,
        contract.TAG_MODEL_CONFIG_NAME: mc,
        contract.TAG_DATASET_NAME: "Online Retail",
        contract.TAG_MODEL_TYPE: contract.MODEL_TYPE_TWO_TOWER,
        **evaluation_tags,
    }
    return f"run-{i:04d}-{fc}-{mc}", metrics, params, tags, best_val


T0 = 1_700_000_000_000


def populate(tracking_uri: str, runs: int = RUNS, epochs: int = EPOCHS, seed: int = 0) -> None:
    """Log ``runs`` trainer-shaped runs (:func:`run_payload`) with ``log_batch`` (direct to the
    store); the best ``contract.TIE_CHECK_RUNS`` by the rank metric carry the best-model
    step's tie tags."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    rng = random.Random(seed)
    client = MlflowClient(tracking_uri=tracking_uri)
    eid = client.create_experiment(EXPERIMENT)
    best_vals: dict[str, float] = {}
    for i in range(runs):
        start = T0 + i * 60_000
        name, points, params, tags, best_val = run_payload(i, rng, epochs, start)
        run = client.create_run(eid, run_name=name, start_time=start)
        best_vals[run.info.run_id] = best_val
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in points]
        for j in range(0, len(metrics), 1000):
            client.log_batch(
                run.info.run_id,
                metrics=metrics[j : j + 1000],
                params=[Param(k, v) for k, v in params.items()] if j == 0 else [],
                tags=[RunTag(k, v) for k, v in tags.items()] if j == 0 else [],
            )
        client.set_terminated(run.info.run_id, status="FINISHED", end_time=start + 30_000)
    tag_ties(client, best_vals)


def populate_sql(db_path: str, runs: int = RUNS, epochs: int = EPOCHS, seed: int = 0) -> None:
    """The same runs as :func:`populate`, written into MLflow's SQLite tables in bulk.

    For 10,000 runs (log_batch would take ~35 min here): one run is created through MLflow
    (its ``runs`` row and system tags are the template, so every column MLflow writes is
    there), then each run's rows go in with ``executemany``: ``runs``, ``metrics``,
    ``latest_metrics`` (each key's value at its highest step, as MLflow keeps it),
    ``params``, ``tags``. The report reads them back exactly as logged runs (the 1,000-run
    store of :func:`populate` renders the same tables).
    """
    import sqlite3
    import uuid

    from mlflow.tracking import MlflowClient

    rng = random.Random(seed)
    client = MlflowClient(tracking_uri=f"sqlite:///{db_path}")
    eid = client.create_experiment(EXPERIMENT)
    template = client.create_run(eid, run_name="template", start_time=T0).info.run_id
    client.set_terminated(template, status="FINISHED", end_time=T0 + 30_000)
    db = sqlite3.connect(db_path)
    columns = [c[1] for c in db.execute("PRAGMA table_info(runs)")]
    row = dict(
        zip(
            columns,
            db.execute("SELECT * FROM runs WHERE run_uuid = ?", (template,)).fetchone(),
            strict=True,
        )
    )
    system_tags = db.execute(
        "SELECT key, value FROM tags WHERE run_uuid = ? AND key != 'mlflow.runName'", (template,)
    ).fetchall()
    best_vals: dict[str, float] = {}
    for i in range(runs):
        start = T0 + i * 60_000
        name, points, params, tags, best_val = run_payload(i, rng, epochs, start)
        run_id = uuid.uuid4().hex
        best_vals[run_id] = best_val
        values = {**row, "run_uuid": run_id, "name": name, "start_time": start,
                  "end_time": start + 30_000,
                  "artifact_uri": row["artifact_uri"].replace(template, run_id)}  # fmt: skip
        db.execute(
            f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [values[c] for c in columns],
        )
        db.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?, ?, ?, ?, ?, 0)",
            [(k, v, ts, run_id, step) for k, v, ts, step in points],
        )
        latest: dict[str, tuple[float, int, int]] = {}
        for k, v, ts, step in points:
            if k not in latest or step >= latest[k][2]:
                latest[k] = (v, ts, step)
        db.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            [(k, v, ts, step, run_id) for k, (v, ts, step) in latest.items()],
        )
        db.executemany(
            "INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
            [(k, v, run_id) for k, v in params.items()],
        )
        db.executemany(
            "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
            [(k, v, run_id) for k, v in [*tags.items(), *system_tags, ("mlflow.runName", name)]],
        )
    db.commit()
    db.close()
    client.delete_run(template)
    tag_ties(client, best_vals)


RENDERS = int(os.environ.get("REPORT_BENCH_RENDERS", size("3", "1")))
WARM_UP = size(True, False)  # one render first, not timed (imports, caches)


def per_run_read(client, limit: int | None = None) -> tuple[dict, int]:
    """The per-run client's reads: listing pages, then per run ``get_run`` and ``get_metric_history``.

    Reads the experiment's first ``limit`` runs (all when None), every history metric each
    logged. Returns (run id -> {metric: [(step, value)]}, the number of points read).
    """
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(EXPERIMENT)
    run_ids, token = [], None
    while limit is None or len(run_ids) < limit:
        page = client.search_runs(
            [experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000 if limit is None else min(1000, limit - len(run_ids)),
            page_token=token,
        )  # fmt: skip
        run_ids += [r.info.run_id for r in page]
        token = page.token
        if not token:
            break
    histories: dict = {}
    points = 0
    for run_id in run_ids:
        logged = client.get_run(run_id).data.metrics
        per_key = {}
        for key in HISTORY_METRICS:  # the 8 per-epoch metrics every run of the benchmark logs
            if key in logged:
                history = client.get_metric_history(run_id, key)
                per_key[key] = sorted((int(m.step), float(m.value)) for m in history)
                points += len(history)
        histories[run_id] = per_key
    return histories, points


def per_run_fetcher(client, tracking_uri, runs, keys):
    """The per-run approach: one get_run and one get_metric_history per metric, per run.

    Fetches every history metric of every run of the experiment on the first call, whatever
    ``runs`` and ``keys`` ask for (the report asks for the runs it lists, 200 of 1,000), as
    the seed's service did; the report's later history requests find nothing left to fetch.
    """
    histories, _ = per_run_read(client)
    return histories, "per-run get_run + get_metric_history"


def _render(url: str, out: Path, fetcher=None) -> dict:
    from reporting.build import write_report
    from tests.integration.conftest import count_requests  # the tests' counter, one home

    with count_requests() as counter:
        started = time.perf_counter()
        result = write_report(url, EXPERIMENT, str(out), _history_fetcher=fetcher)
        elapsed = time.perf_counter() - started
    return {
        "s": elapsed,
        "mlflow_s": result.mlflow_s,
        "requests": sum(counter.values()),
        "by_endpoint": dict(counter),
        "runs": result.run_count,
    }


def _median(renders: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in renders), 2)


def main() -> dict:
    """Run the benchmark and print a Markdown block for bench/RESULTS.md."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="report-bench-"))
    try:
        db = workdir / "mlflow.db"
        t = time.perf_counter()
        populate(f"sqlite:///{db}")
        populate_s = time.perf_counter() - t
        print(f"populated {RUNS} runs x {len(HISTORY_METRICS)} metrics x {EPOCHS} epochs "
              f"in {populate_s:.1f}s", flush=True)  # fmt: skip
        with mlflow_server(f"sqlite:///{db}", workdir) as url:
            if WARM_UP:
                _render(url, workdir / "warmup")  # imports, font cache, server caches
            bulk = [_render(url, workdir / f"bulk{i}") for i in range(RENDERS)]
            print("bulk renders:", [round(b["s"], 2) for b in bulk], flush=True)
            per_run = _render(url, workdir / "per-run", per_run_fetcher)
            print(f"per-run render: {per_run['s']:.2f}s", flush=True)
        with mlflow_server(f"sqlite:///{db}", workdir, as_deployed=False) as url:
            if WARM_UP:
                _render(url, workdir / "warmup-bare")
            bare = [_render(url, workdir / f"bare{i}") for i in range(RENDERS)]
        bulk_s = _median(bulk, "s")
        figures = {
            "runs": bulk[0]["runs"],
            "bulk_seconds": [round(b["s"], 2) for b in bulk],
            "bulk_median_s": bulk_s,
            "bulk_mlflow_median_s": _median(bulk, "mlflow_s"),
            "bulk_requests": bulk[0]["requests"],
            "bulk_by_endpoint": bulk[0]["by_endpoint"],
            "per_run_s": round(per_run["s"], 2),
            "per_run_mlflow_s": round(per_run["mlflow_s"], 2),
            "per_run_requests": per_run["requests"],
            "per_run_by_endpoint": per_run["by_endpoint"],
            "request_ratio": round(per_run["requests"] / bulk[0]["requests"], 1),
            "time_ratio": round(per_run["s"] / bulk_s, 1),
            "bare_server_seconds": [round(b["s"], 2) for b in bare],
            "bare_server_median_s": _median(bare, "s"),
            "bare_server_mlflow_median_s": _median(bare, "mlflow_s"),
        }
        print(
            f"""
| | bulk (write_report) | per-run | ratio |
|---|---:|---:|---:|
| wall time, full report | {bulk_s:.2f} s (median of {figures["bulk_seconds"]}) | {per_run["s"]:.2f} s | {figures["time_ratio"]}x |
| of which reading MLflow | {figures["bulk_mlflow_median_s"]:.2f} s | {figures["per_run_mlflow_s"]:.2f} s | |
| HTTP requests | {figures["bulk_requests"]} | {figures["per_run_requests"]} | {figures["request_ratio"]}x |

bulk requests by endpoint: {figures["bulk_by_endpoint"]}
per-run requests by endpoint: {figures["per_run_by_endpoint"]}
bare `mlflow server` (mlflow defaults): {figures["bare_server_median_s"]:.2f} s (median of {figures["bare_server_seconds"]}; MLflow {figures["bare_server_mlflow_median_s"]:.2f} s)
"""
        )
        ok = bulk_s <= 10 and figures["request_ratio"] >= 20 and figures["time_ratio"] >= 3
        print("targets (<= 10 s, >= 20x requests, >= 3x time):", "MET" if ok else "NOT MET")
        return figures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
