"""REST latency of the served model: ``mlflow models serve`` on the logged MLflow model.

The demo's default pair (configs/online_retail.yaml, its first feature and model config: the
history bag, RFM, country, text, price, log-q and repurchase scores) on the real Online Retail
data, exported exactly as training exports it (``serving.export_serving_model``, the whole
catalog scored exactly per request) and saved as the MLflow model training logs
(``serving.save_mlflow_model``). The weights are the untrained initial ones: a request runs
the same graph whatever the weights, so latency does not depend on them (and the benchmark
needs no 10-minute training).

``mlflow models serve --env-manager local`` (one uvicorn worker, 127.0.0.1) answers
``/invocations`` requests in the ``dataframe_split`` form with 1 buyer and with 100 buyers per
request (real validation buyers' raw features, top-100 each); each size is warmed up with 3
requests, then timed ``REQUESTS`` times one after the other (client wall time: JSON, HTTP, the
pyfunc, the SavedModel). Prints p50 / p95 / max per size, and the in-process SavedModel call on
the same buyers for comparison. Ingest and transform come from the resume benchmark's cache.

Run: ``python -m bench serving``; bench/RESULTS.md is written by hand from its table.
``--smoke``: 2% of the buyers, 5 requests per size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from bench import size
from bench.resume_bench import experiment, prepare

REQUESTS = size(200, 5)
BATCHES = (1, 100)
WARMUP = 3
START_S = 300


def export_model(config, dirs: tuple[str, str], folder: str):
    """The default pair exported and saved as an MLflow model; returns (model dir, queries)."""
    import tensorflow_transform as tft

    from trainer import inputs, serving, train

    ingest_dir, transform_dir = dirs
    tft_output = tft.TFTransformOutput(transform_dir)
    data = inputs.load_training_data(config, ingest_dir)
    fc, mc = config.feature_config(), config.model_config()
    # Log-q correction changes only the training loss, not what a request computes.
    mc = dataclasses.replace(mc, logq_correction=False)
    two_tower = train.TwoTowerModel(fc, mc, train.cardinalities(fc, tft_output))
    serving_dir = serving.export_serving_model(
        os.path.join(folder, "serving"), two_tower, tft_output, data.catalog, fc
    )
    model_dir = serving.save_mlflow_model(
        serving_dir, os.path.join(folder, "mlflow_model"), data.queries
    )
    return serving_dir, model_dir, data.queries, len(data.catalog)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str, log_path: str) -> tuple[subprocess.Popen, str]:
    """``mlflow models serve`` on the folder; returns the process and its base URL once up."""
    port = _free_port()
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    command = [os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", model_dir]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "-w", "1"]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited; see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2):
                return server, base
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    server.terminate()
    raise RuntimeError(f"mlflow models serve did not answer in {START_S} s; see {log_path}")


def timed_requests(base: str, body: bytes, n: int) -> list[float]:
    """Seconds of ``n`` sequential POSTs of ``body`` to /invocations (after the warm-up)."""
    times = []
    for i in range(WARMUP + n):
        request = urllib.request.Request(
            f"{base}/invocations", body, {"Content-Type": "application/json"}, method="POST"
        )
        t = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        if i >= WARMUP:
            times.append(time.perf_counter() - t)
    assert len(answer["predictions"][0]["product_ids"]) > 0
    return times


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def in_process_ms(serving_dir: str, queries, n: int) -> float:
    """Median ms of the SavedModel called in process on the same buyers."""
    from trainer import serving

    serve = serving.load_serving_model(serving_dir)
    serving.serve_top_k(serve, queries)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        serving.serve_top_k(serve, queries)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    config = experiment()
    dirs = prepare(config)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder:
        serving_dir, model_dir, queries, catalog = export_model(config, dirs, folder)
        print(f"catalog {catalog:,} products, top-100 per buyer, {REQUESTS} requests per size")
        server, base = start_server(model_dir, os.path.join(folder, "serve.log"))
        try:
            print("| buyers / request | p50 ms | p95 ms | max ms | in-process p50 ms |")
            print("|---:|---:|---:|---:|---:|")
            for batch in BATCHES:
                rows = queries.head(batch).reset_index(drop=True)
                split = json.loads(rows.to_json(orient="split", index=False))
                body = json.dumps({"dataframe_split": split}).encode()
                ms = [1000 * t for t in timed_requests(base, body, REQUESTS)]
                local = in_process_ms(serving_dir, rows, min(REQUESTS, 50))
                print(
                    f"| {batch} | {percentile(ms, 50):.1f} | {percentile(ms, 95):.1f} "
                    f"| {max(ms):.1f} | {local:.1f} |",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
