"""Per-epoch metric histories from MLflow, fetched in bulk the cheapest way the store allows.

* tracking server (``http(s)://``): the ``get-history-bulk`` endpoint (the bulk-interval
  endpoint where that one is not served), one request per history metric per
  :data:`BULK_RUNS_PER_REQUEST` runs;
* database store (``sqlite://``, ``postgresql://``, ...): one SQL query per
  :data:`SQL_RUNS_PER_QUERY` runs for all history metrics at once;
* anything else: ``get_metric_history`` per run and metric (the only per-run path).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from reporting.records import History, RunRecord, metric_float
from trainer.tracking import TrackingUri

log = logging.getLogger(__name__)

# The tracking server refuses more run ids per bulk request
# (MAX_RUNS_GET_METRIC_HISTORY_BULK).
BULK_RUNS_PER_REQUEST = 100
# History requests in flight at once: enough to overlap the server's SQL with the transfer.
PARALLEL_REQUESTS = 4
# Points per run the bulk-interval endpoint returns at most (MAX_RESULTS_PER_RUN); longer
# histories come back evenly sampled, which is what a chart needs.
BULK_MAX_POINTS = 2500
# Bound on the SQL IN (...) list, well under SQLite's variable limit.
SQL_RUNS_PER_QUERY = 500
BULK_INTERVAL_ENDPOINT = "/api/2.0/mlflow/metrics/get-history-bulk-interval"
# Full histories of up to 100 runs in one SQL query on the server (the MLflow UI's own chart
# endpoint). The bulk-interval endpoint samples each run separately server-side, which on a
# SQLite/PostgreSQL store costs ~1 s per 100 runs per metric (measured, bench/RESULTS.md).
BULK_HISTORY_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
BULK_HISTORY_MAX_POINTS = 25000


def host_creds(client: MlflowClient) -> Any:
    """The REST store's credentials for raw requests to the tracking server."""
    # The REST store holds the credentials provider (token, basic auth, TLS settings).
    return client._tracking_client.store.get_host_creds()


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _store_points(
    history: dict[str, History], run_id: str, key: str, step: int, ts: int, value: float
) -> None:
    point = (step, ts, metric_float(value))
    history.setdefault(run_id, {}).setdefault(key, []).append(point)  # type: ignore[arg-type]


def _finish(raw: dict[str, History]) -> dict[str, History]:
    """One point per step, sorted by step: of several at one step, the latest logged.

    A retried training (a rerun of its pipeline task resumes the same MLflow run) logs some
    epochs again; the value logged last, by timestamp, is the one that stands, as MLflow's
    own "latest value" does (a tie on the timestamp: the larger value, like MLflow).
    """
    out: dict[str, History] = {}
    for run_id, per_key in raw.items():
        out[run_id] = {}
        for key, points in per_key.items():
            by_step: dict[int, tuple[int, float]] = {}
            for step, ts, value in sorted(points):  # type: ignore[misc]
                by_step[step] = (ts, value)
            out[run_id][key] = [(s, v) for s, (_, v) in sorted(by_step.items())]
    return out


def _wanted(runs: list[RunRecord], keys: list[str]) -> dict[str, list[str]]:
    """Per history key, the runs whose latest metrics show they logged it."""
    return {k: [r.run_id for r in runs if k in r.metrics] for k in keys}


def _batches_for(runs: list[RunRecord], run_ids: list[str], key: str) -> Iterable[list[str]]:
    """Batches of run ids whose histories fit one get-history-bulk answer (25,000 points)."""
    by_id = {r.run_id: r for r in runs}
    longest = max((by_id[i].metric_steps.get(key, 0) + 1 for i in run_ids), default=1)
    size = max(1, min(BULK_RUNS_PER_REQUEST, BULK_HISTORY_MAX_POINTS // (2 * longest)))
    return _chunks(run_ids, size)


def _bulk_request(creds: Any, key: str, batch: list[str], interval: bool) -> tuple[str, list]:
    """One bulk history request: ``key`` for the runs in ``batch``; (key, metric points)."""
    from mlflow.utils.rest_utils import http_request_safe

    if interval:
        params = {"run_ids": batch, "metric_key": key, "max_results": BULK_MAX_POINTS}
        endpoint = BULK_INTERVAL_ENDPOINT
    else:
        params = {"run_id": batch, "metric_key": key, "max_results": BULK_HISTORY_MAX_POINTS}
        endpoint = BULK_HISTORY_ENDPOINT
    response = http_request_safe(creds, endpoint, "GET", params=params)
    return key, response.json().get("metrics", [])


def fetch_histories_rest(
    client: MlflowClient, runs: list[RunRecord], keys: list[str]
) -> tuple[dict[str, History], str]:
    """Histories from a tracking server, <= 100 runs per request per metric, requests in parallel.

    Uses ``get-history-bulk`` (one SQL query per request on the server) and falls back to the
    public ``get-history-bulk-interval`` endpoint where the former is not served.
    """
    from concurrent.futures import ThreadPoolExecutor

    creds = host_creds(client)
    requests = [
        (key, batch)
        for key, run_ids in _wanted(runs, keys).items()
        for batch in _batches_for(runs, run_ids, key)
    ]
    use_interval = False
    results = []
    if requests:
        # The first request tells whether the server has get-history-bulk at all.
        try:
            results.append(_bulk_request(creds, *requests[0], use_interval))
        except MlflowException as exc:
            if exc.get_http_status_code() != 404 and exc.error_code != "ENDPOINT_NOT_FOUND":
                raise
            log.warning("%s not served; using %s", BULK_HISTORY_ENDPOINT, BULK_INTERVAL_ENDPOINT)
            use_interval = True
            results.append(_bulk_request(creds, *requests[0], use_interval))
        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            results.extend(pool.map(lambda r: _bulk_request(creds, *r, use_interval), requests[1:]))
    raw: dict[str, History] = {}
    for key, metrics in results:
        for m in metrics:
            step, ts = int(m.get("step", 0)), int(m.get("timestamp", 0))
            _store_points(raw, m["run_id"], key, step, ts, m["value"])
    source = "bulk-interval endpoint" if use_interval else "get-history-bulk endpoint"
    return _finish(raw), f"tracking server {source}"


def fetch_histories_sql(store: Any, runs: list[RunRecord], keys: list[str]) -> dict[str, History]:
    """Histories straight from a SqlAlchemyStore: one query per 500 runs for all keys."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    run_ids = sorted({rid for ids in _wanted(runs, keys).values() for rid in ids})
    raw: dict[str, History] = {}
    with store.ManagedSessionMaker() as session:
        for batch in _chunks(run_ids, SQL_RUNS_PER_QUERY):
            rows = (
                session.query(
                    SqlMetric.run_uuid,
                    SqlMetric.key,
                    SqlMetric.step,
                    SqlMetric.timestamp,
                    SqlMetric.value,
                    SqlMetric.is_nan,
                )
                .filter(SqlMetric.run_uuid.in_(batch), SqlMetric.key.in_(keys))
                .all()
            )
            for run_id, key, step, ts, value, is_nan in rows:
                # The SQL store keeps NaN as 0 with is_nan set.
                value = math.nan if is_nan else value
                _store_points(raw, run_id, key, int(step), int(ts), value)
    return _finish(raw)


def fetch_histories_per_run(
    client: MlflowClient, runs: list[RunRecord], keys: list[str]
) -> dict[str, History]:
    """One ``get_metric_history`` call per run and metric: the slow path, for other stores."""
    raw: dict[str, History] = {}
    for key, run_ids in _wanted(runs, keys).items():
        for run_id in run_ids:
            for m in client.get_metric_history(run_id, key):
                _store_points(raw, run_id, key, int(m.step), int(m.timestamp), m.value)
    return _finish(raw)


HistoryFetcher = Callable[[MlflowClient, str, list[RunRecord], list[str]], tuple[dict, str]]


def is_sql_store(store: Any) -> bool:
    """Whether ``store`` is MLflow's database store (None, over HTTP: not asked).

    Its module is imported only here: over HTTP it is never needed, and importing it (with
    SQLAlchemy and alembic) was ~1.4 s of a report's start-up.
    """
    if store is None:
        return False
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return isinstance(store, SqlAlchemyStore)


def fetch_histories(
    client: MlflowClient, tracking_uri: str, runs: list[RunRecord], keys: list[str]
) -> tuple[dict[str, History], str]:
    """Fetch histories the cheapest way the store allows.

    Returns:
        (run_id -> metric -> [(step, value)], a description of the path taken).
    """
    if TrackingUri(tracking_uri).is_server:
        try:
            return fetch_histories_rest(client, runs, keys)
        except MlflowException as exc:
            # Servers with neither bulk endpoint answer ENDPOINT_NOT_FOUND.
            if exc.error_code != "ENDPOINT_NOT_FOUND":
                raise
            log.warning("No bulk-interval endpoint on %s; fetching per run", tracking_uri)
            return fetch_histories_per_run(
                client, runs, keys
            ), "per-run metric history (old server)"
    store = client._tracking_client.store
    if is_sql_store(store):
        return fetch_histories_sql(store, runs, keys), "bulk SQL on the tracking database"
    return fetch_histories_per_run(client, runs, keys), "per-run metric history (store fallback)"
