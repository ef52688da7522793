"""The one adapter between the report and MLflow: runs, params, tags, metrics and histories.

Everything the report knows about an experiment comes through an :class:`ExperimentReader`,
which makes as few round trips as the store allows:

* runs: ``search_runs`` pages of :data:`SEARCH_PAGE_SIZE` (params, tags and the latest value of
  every metric come with each run, so no per-run fetch is needed);
* per-epoch histories, only for the (run, metric) pairs a page draws, by store type:
    - tracking server (``http(s)://``): the ``get-history-bulk`` endpoint (the bulk-interval
      endpoint where that one is not served), one request per history metric per
      :data:`BULK_RUNS_PER_REQUEST` runs;
    - database store (``sqlite://``, ``postgresql://``, ...): one SQL query per
      :data:`SQL_RUNS_PER_QUERY` runs for all history metrics at once;
    - anything else: ``get_metric_history`` per run and metric (the only per-run path).

:func:`load_experiment` reads everything at once (every history of every run).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trainer import contract

log = logging.getLogger(__name__)

# search_runs page size; the server caps it at 50,000 and the SQL store at 50,000 too.
SEARCH_PAGE_SIZE = 1000
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
GET_EXPERIMENT_ENDPOINT = "/api/2.0/mlflow/experiments/get-by-name"
SEARCH_RUNS_ENDPOINT = "/api/2.0/mlflow/runs/search"
# A report must not hang for minutes on MLflow's default retry schedule when the server is down.
PROBE_TIMEOUT_S = 10
PROBE_MAX_RETRIES = 1

# Metric name prefixes that never carry a per-epoch history.
_SUMMARY_PREFIXES = ("final_", "best_", "test_", "baseline_")

History = dict[str, list[tuple[int, float]]]


class TrackingUnreachableError(RuntimeError):
    """MLflow could not be reached (connection refused, DNS, auth, unreadable store)."""


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a failed read from MLflow raises, over HTTP or from a database store."""
    import requests  # mlflow's own dependencies
    import sqlalchemy.exc

    return (
        MlflowException,
        OSError,
        requests.exceptions.RequestException,
        sqlalchemy.exc.SQLAlchemyError,
    )


@dataclasses.dataclass
class RunRecord:
    """One MLflow run as the report sees it.

    Attributes:
        run_id: MLflow run id.
        name: Run name (falls back to the id's first 8 characters).
        status: FINISHED, FAILED, RUNNING, SCHEDULED or KILLED.
        start_time: Start time in ms since the epoch (0 when unknown).
        end_time: End time in ms since the epoch (None while running).
        params: All params.
        tags: User tags (``mlflow.*`` system tags removed).
        metrics: Latest value of every metric.
        metric_steps: Step of the latest value of every metric.
        history: Per-epoch history of each history metric, sorted by step; empty when none.
            Holds only the metrics fetched so far (see :meth:`ExperimentReader.fill_histories`).
        logged_history: History metrics this run logged (known from its latest metrics, before
            any history is fetched).
    """

    run_id: str
    name: str
    status: str
    start_time: int
    end_time: int | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]
    metric_steps: dict[str, int]
    history: History = dataclasses.field(default_factory=dict)
    logged_history: tuple[str, ...] = ()

    @property
    def feature_config(self) -> str:
        """Feature config display name (tag, else id param, else empty)."""
        return self.tags.get(contract.TAG_FEATURE_CONFIG_NAME) or self.params.get(
            contract.PARAM_FEATURE_CONFIG_ID, ""
        )

    @property
    def model_config(self) -> str:
        """Model config display name (tag, else id param, else empty)."""
        return self.tags.get(contract.TAG_MODEL_CONFIG_NAME) or self.params.get(
            contract.PARAM_MODEL_CONFIG_ID, ""
        )

    @property
    def has_history(self) -> bool:
        """Whether any per-epoch history was logged (fetched or not)."""
        return bool(self.logged_history) or any(self.history.values())

    @property
    def epochs(self) -> int | None:
        """Points in the longest history fetched so far (None when none was fetched)."""
        lengths = [len(pts) for pts in self.history.values() if pts]
        return max(lengths) if lengths else None

    @property
    def duration_s(self) -> float | None:
        """Wall time of the run in seconds, None while running or unknown."""
        if not self.end_time or not self.start_time:
            return None
        return max(0.0, (self.end_time - self.start_time) / 1000.0)


@dataclasses.dataclass
class ExperimentData:
    """What :meth:`ExperimentReader.read` and :func:`load_experiment` return.

    Attributes:
        experiment_id: MLflow experiment id ("" when the experiment does not exist).
        runs: All active runs, newest first.
        history_keys: History metric names found, in display order.
        history_source: How histories were fetched (for the report's footer; "" until some
            were).
        notes: Things the reader should know (missing experiment, fallbacks taken).
    """

    experiment_id: str
    runs: list[RunRecord]
    history_keys: list[str]
    history_source: str
    notes: list[str] = dataclasses.field(default_factory=list)


def record_from_json(run: dict[str, Any]) -> RunRecord:
    """A RunRecord from one run in the REST API's ``runs/search`` shape (the one parser).

    Runs from a database store come through :func:`_as_json` first, so both paths share the
    same rules (name fallback, system tags dropped, NaN/infinity read back as floats).
    """
    info, data = run.get("info", {}), run.get("data", {})
    metrics = data.get("metrics", [])
    run_id = info.get("run_id") or info["run_uuid"]
    end_time = info.get("end_time")
    return RunRecord(
        run_id=run_id,
        name=info.get("run_name") or run_id[:8],
        status=info.get("status", contract.STATUS_RUNNING),
        start_time=int(info.get("start_time") or 0),
        end_time=int(end_time) if end_time else None,
        params={p["key"]: p.get("value", "") for p in data.get("params", [])},
        tags={
            t["key"]: t.get("value", "")
            for t in data.get("tags", [])
            if not t["key"].startswith("mlflow.")
        },
        # JSON carries NaN and infinities as the strings "NaN" / "Infinity"; float() reads both.
        metrics={m["key"]: float(m.get("value", "NaN")) for m in metrics},
        metric_steps={m["key"]: int(m.get("step", 0)) for m in metrics},
    )


def _as_json(run: Any) -> dict[str, Any]:
    """An ``mlflow.entities.Run`` in the ``runs/search`` JSON shape (fields only, no rules)."""
    info, data = run.info, run.data
    return {
        "info": {
            "run_id": info.run_id,
            "run_name": info.run_name,
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
        },
        "data": {
            "params": [{"key": k, "value": v} for k, v in data.params.items()],
            "tags": [{"key": k, "value": v} for k, v in data.tags.items()],
            # The latest value of each metric, with its step (data.metrics drops the step).
            "metrics": [
                {"key": m.key, "value": m.value, "step": m.step}
                for m in getattr(data, "_metric_objs", [])
            ],
        },
    }


def history_keys_for(runs: Iterable[RunRecord]) -> list[str]:
    """History metric names: the contract's, then any other metric logged at a step > 0."""
    known = contract.history_metrics()
    extra: set[str] = set()
    for run in runs:
        for key, step in run.metric_steps.items():
            if step > 0 and key not in known and not key.startswith(_SUMMARY_PREFIXES):
                extra.add(key)
    return known + sorted(extra)


def _is_http(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def _host_creds(client: MlflowClient) -> Any:
    # The REST store holds the credentials provider (token, basic auth, TLS settings).
    return client._tracking_client.store.get_host_creds()


def probe(client: MlflowClient, tracking_uri: str, experiment: str) -> str | None:
    """Check that MLflow answers and look up the experiment.

    Args:
        client: Client bound to ``tracking_uri``.
        tracking_uri: The tracking URI (decides how to probe).
        experiment: Experiment name.

    Returns:
        The experiment id, or None when the experiment does not exist.

    Raises:
        TrackingUnreachableError: MLflow did not answer or refused the request.
    """
    if _is_http(tracking_uri):
        import requests  # mlflow's own dependency
        from mlflow.utils.rest_utils import http_request

        try:
            response = http_request(
                _host_creds(client),
                GET_EXPERIMENT_ENDPOINT,
                "GET",
                max_retries=PROBE_MAX_RETRIES,
                backoff_factor=0.5,
                timeout=PROBE_TIMEOUT_S,
                raise_on_status=False,
                params={"experiment_name": experiment},
            )
        except (requests.exceptions.RequestException, MlflowException, OSError) as exc:
            raise TrackingUnreachableError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TrackingUnreachableError(
                f"HTTP {response.status_code} from {GET_EXPERIMENT_ENDPOINT}: {response.text[:300]}"
            )
        return response.json()["experiment"]["experiment_id"]
    import sqlalchemy.exc  # mlflow's own dependency

    try:
        exp = client.get_experiment_by_name(experiment)
    except (MlflowException, OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise TrackingUnreachableError(f"{type(exc).__name__}: {exc}") from exc
    return exp.experiment_id if exp is not None else None


def search_all_runs(client: MlflowClient, tracking_uri: str, experiment_id: str) -> list[RunRecord]:
    """All active runs of an experiment, following ``page_token`` until the last page.

    Over HTTP the ``runs/search`` answer is read as JSON straight into :class:`RunRecord`; the
    client's protobuf round trip would cost more than the transfer (~1 s per 1,000 runs).
    """
    records: list[RunRecord] = []
    token: str | None = None
    if _is_http(tracking_uri):
        from mlflow.utils.rest_utils import http_request_safe

        creds = _host_creds(client)
        while True:
            body: dict[str, Any] = {
                "experiment_ids": [experiment_id],
                "run_view_type": "ACTIVE_ONLY",
                "max_results": SEARCH_PAGE_SIZE,
            }
            if token:
                body["page_token"] = token
            page = http_request_safe(creds, SEARCH_RUNS_ENDPOINT, "POST", json=body).json()
            records.extend(record_from_json(r) for r in page.get("runs", []))
            token = page.get("next_page_token")
            if not token:
                return records
    while True:
        page = client.search_runs(
            [experiment_id],
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=SEARCH_PAGE_SIZE,
            page_token=token,
        )
        records.extend(record_from_json(_as_json(r)) for r in page)
        token = page.token
        if not token:
            return records


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _store_points(
    history: dict[str, History], run_id: str, key: str, step: int, ts: int, value: float
) -> None:
    # Several values at one step: the last logged wins (same as MLflow's "latest").
    history.setdefault(run_id, {}).setdefault(key, []).append((step, ts, value))  # type: ignore[arg-type]


def _finish(raw: dict[str, History]) -> dict[str, History]:
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


def fetch_histories_rest(
    client: MlflowClient, runs: list[RunRecord], keys: list[str]
) -> tuple[dict[str, History], str]:
    """Histories from a tracking server, <= 100 runs per request per metric, requests in parallel.

    Uses ``get-history-bulk`` (one SQL query per request on the server) and falls back to the
    public ``get-history-bulk-interval`` endpoint where the former is not served.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.utils.rest_utils import http_request_safe

    creds = _host_creds(client)
    requests = [
        (key, batch)
        for key, run_ids in _wanted(runs, keys).items()
        for batch in _batches_for(runs, run_ids, key)
    ]
    use_interval = False

    def fetch(request: tuple[str, list[str]]) -> tuple[str, list[dict]]:
        key, batch = request
        if use_interval:
            params = {"run_ids": batch, "metric_key": key, "max_results": BULK_MAX_POINTS}
            endpoint = BULK_INTERVAL_ENDPOINT
        else:
            params = {"run_id": batch, "metric_key": key, "max_results": BULK_HISTORY_MAX_POINTS}
            endpoint = BULK_HISTORY_ENDPOINT
        response = http_request_safe(creds, endpoint, "GET", params=params)
        return key, response.json().get("metrics", [])

    results = []
    if requests:
        # The first request tells whether the server has get-history-bulk at all.
        try:
            results.append(fetch(requests[0]))
        except MlflowException as exc:
            if exc.get_http_status_code() != 404 and exc.error_code != "ENDPOINT_NOT_FOUND":
                raise
            log.warning("%s not served; using %s", BULK_HISTORY_ENDPOINT, BULK_INTERVAL_ENDPOINT)
            use_interval = True
            results.append(fetch(requests[0]))
        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            results.extend(pool.map(fetch, requests[1:]))
    raw: dict[str, History] = {}
    for key, metrics in results:
        for m in metrics:
            _store_points(
                raw,
                m["run_id"],
                key,
                int(m.get("step", 0)),
                int(m.get("timestamp", 0)),
                float(m["value"]),
            )
    source = (
        "tracking server bulk-interval endpoint"
        if use_interval
        else "tracking server get-history-bulk endpoint"
    )
    return _finish(raw), source


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
                )
                .filter(SqlMetric.run_uuid.in_(batch), SqlMetric.key.in_(keys))
                .all()
            )
            for run_id, key, step, ts, value in rows:
                _store_points(raw, run_id, key, int(step), int(ts), float(value))
    return _finish(raw)


def fetch_histories_per_run(
    client: MlflowClient, runs: list[RunRecord], keys: list[str]
) -> dict[str, History]:
    """One ``get_metric_history`` call per run and metric: the slow path, for other stores."""
    raw: dict[str, History] = {}
    for key, run_ids in _wanted(runs, keys).items():
        for run_id in run_ids:
            for m in client.get_metric_history(run_id, key):
                _store_points(raw, run_id, key, int(m.step), int(m.timestamp), float(m.value))
    return _finish(raw)


HistoryFetcher = Callable[[MlflowClient, str, list[RunRecord], list[str]], tuple[dict, str]]


def fetch_histories(
    client: MlflowClient, tracking_uri: str, runs: list[RunRecord], keys: list[str]
) -> tuple[dict[str, History], str]:
    """Fetch histories the cheapest way the store allows.

    Returns:
        (run_id -> metric -> [(step, value)], a description of the path taken).
    """
    if _is_http(tracking_uri):
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
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    if isinstance(store, SqlAlchemyStore):
        return fetch_histories_sql(store, runs, keys), "bulk SQL on the tracking database"
    return fetch_histories_per_run(client, runs, keys), "per-run metric history (store fallback)"


class ExperimentReader:
    """Reads one MLflow experiment: all runs first, then histories for the runs that need them.

    A report draws every run's loss and ranking-metric curves but the full set of history
    metrics only for a dozen runs; fetching histories per (runs, metrics) request keeps the
    number of history requests to what the pages show.

    Args:
        tracking_uri: MLflow tracking URI (``http(s)://``, ``sqlite:///``, ``postgresql://``...).
        history_fetcher: Replaces :func:`fetch_histories` (the benchmark's per-run baseline).
    """

    def __init__(self, tracking_uri: str, history_fetcher: HistoryFetcher | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._fetcher = history_fetcher or fetch_histories
        self._fetched: set[tuple[str, str]] = set()
        self.fetch_s = 0.0

    def read(self, experiment: str) -> ExperimentData:
        """Every active run of ``experiment``, newest first, without histories.

        Raises:
            TrackingUnreachableError: MLflow did not answer.
        """
        started = time.perf_counter()
        experiment_id = probe(self.client, self.tracking_uri, experiment)
        if experiment_id is None:
            return ExperimentData(
                "", [], [], "", notes=[f"Experiment {experiment!r} does not exist (yet)."]
            )
        try:
            runs = search_all_runs(self.client, self.tracking_uri, experiment_id)
        except _read_errors() as exc:
            raise TrackingUnreachableError(f"searching runs: {type(exc).__name__}: {exc}") from exc
        keys = history_keys_for(runs)
        for run in runs:
            run.logged_history = tuple(k for k in keys if k in run.metrics)
        self.fetch_s += time.perf_counter() - started
        log.info(
            "Read %d runs of %r in %.2fs", len(runs), experiment, time.perf_counter() - started
        )
        return ExperimentData(experiment_id, runs, keys, "")

    def fill_histories(
        self, data: ExperimentData, runs: Iterable[RunRecord], keys: Iterable[str]
    ) -> None:
        """Fetch the histories of ``keys`` for ``runs`` that were not fetched before.

        Raises:
            TrackingUnreachableError: MLflow stopped answering (what was fetched before stays).
        """
        started = time.perf_counter()
        wanted_keys = [k for k in dict.fromkeys(keys) if k in data.history_keys]
        # (run, metric) pairs this run logged and nobody fetched yet.
        pairs = [
            (run, k)
            for run in runs
            for k in wanted_keys
            if k in run.logged_history and (run.run_id, k) not in self._fetched
        ]
        todo = {run.run_id: run for run, _ in pairs}
        pending = {k for _, k in pairs}
        todo_keys = [k for k in wanted_keys if k in pending]
        if not todo:
            return
        try:
            histories, source = self._fetcher(
                self.client, self.tracking_uri, list(todo.values()), todo_keys
            )
        except _read_errors() as exc:
            raise TrackingUnreachableError(
                f"fetching metric histories: {type(exc).__name__}: {exc}"
            ) from exc
        for run_id, run in todo.items():
            fetched = histories.get(run_id, {})
            for key in {*todo_keys, *fetched}:
                if (run_id, key) in self._fetched:
                    continue
                self._fetched.add((run_id, key))
                if fetched.get(key):
                    run.history[key] = fetched[key]
        data.history_source = source
        elapsed = time.perf_counter() - started
        self.fetch_s += elapsed
        log.info(
            "Fetched %d history metrics of %d runs (%s) in %.2fs",
            len(todo_keys),
            len(todo),
            source,
            elapsed,
        )


def load_experiment(
    tracking_uri: str,
    experiment: str,
    history_fetcher: HistoryFetcher | None = None,
) -> ExperimentData:
    """Read every active run of an experiment with all its per-epoch histories.

    Args:
        tracking_uri: MLflow tracking URI (``http(s)://``, ``sqlite:///``, ``postgresql://``...).
        experiment: Experiment name.
        history_fetcher: Replaces :func:`fetch_histories` (the benchmark's per-run baseline).

    Returns:
        The runs, newest first, with ``history`` filled in.

    Raises:
        TrackingUnreachableError: MLflow did not answer.
    """
    reader = ExperimentReader(tracking_uri, history_fetcher)
    data = reader.read(experiment)
    reader.fill_histories(data, data.runs, data.history_keys)
    return data
