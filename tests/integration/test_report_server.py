"""The report against a real ``mlflow server`` on 127.0.0.1: bulk-interval histories over HTTP."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reporting import histories, listing, query
from reporting.build import write_report
from tests.integration.conftest import MlflowServer, count_requests
from tests.unit.reporting.mlflow_runs import EXPERIMENT, log_retried_run, populate_sweep
from trainer import contract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A sweep logged into SQLite, served by ``mlflow_server/entrypoint.sh`` (2 workers, as
    deployed); yields (url, sqlite uri, ids)."""
    work = tmp_path_factory.mktemp("server")
    sqlite_uri = f"sqlite:///{work}/mlflow.db"
    sweep = populate_sweep(sqlite_uri)
    env = {
        "MLFLOW_BACKEND_STORE_URI": sqlite_uri,
        "MLFLOW_ARTIFACT_ROOT": str(work / "artifacts"),
        "MLFLOW_WORKERS": "2",
    }
    running = MlflowServer(env, work / "mlflow-server.log")
    try:
        running.wait_healthy()
        yield running.url, sqlite_uri, sweep.ids
    finally:
        running.stop()


LISTING = listing.LISTING_ENDPOINT.lstrip("/")
SEARCH = "api/2.0/mlflow/runs/search"


def _table(path: str, table_id: str) -> str:
    page = Path(path).read_text(encoding="utf-8")
    table = page[page.index(f'id="{table_id}"') :]
    return table[: table.index("</table>")]


def test_histories_come_from_the_bulk_endpoint(server, tmp_path):
    url, _, _ = server
    with count_requests() as requests_by_path:
        data = query.load_experiment(url, EXPERIMENT)
    assert data.history_source == "tracking server get-history-bulk endpoint"
    # one request per history metric that some run logged (8 runs fit one batch of 100)
    logged = {k for r in data.runs for k in r.history}
    assert requests_by_path["ajax-api/2.0/mlflow/metrics/get-history-bulk"] == len(logged)
    assert not any("metrics/get-history" == p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1]
                   for p in requests_by_path)  # fmt: skip
    # the runs come from the entrypoint's column listing, not runs/search
    assert requests_by_path[LISTING] == 1 and requests_by_path[SEARCH] == 0
    assert sum(requests_by_path.values()) == len(logged) + 2  # + probe + listing
    runs = {r.name: r for r in data.runs}
    assert runs["hist-small"].history["loss"] == [(0, 3.0), (1, 2.84), (2, 2.68)]
    assert not runs["failed"].has_history


def test_server_and_database_paths_render_the_same_tables(server, tmp_path):
    url, sqlite_uri, ids = server
    via_http = write_report(url, EXPERIMENT, str(tmp_path / "http"), highlight_run_id=ids["evil"])
    via_sql = write_report(
        sqlite_uri, EXPERIMENT, str(tmp_path / "sql"), highlight_run_id=ids["evil"]
    )
    assert via_http.reachable and via_http.run_count == 8
    for view, table in (
        ("leaderboard", "leaderboard-table"),
        ("comparison", "compare-metrics"),
        ("heatmap", "heatmap-table"),
    ):
        assert _table(via_http.pages[view], table) == _table(via_sql.pages[view], table)
    assert via_http.metrics == via_sql.metrics
    page = Path(via_http.pages["training_curves"]).read_text()
    assert re.search(r"6 of 8 runs logged a history", page)


def test_small_pages_and_batches_over_http(server, monkeypatch):
    url, _, _ = server
    monkeypatch.setattr(query, "SEARCH_PAGE_SIZE", 3)
    monkeypatch.setattr(histories, "BULK_RUNS_PER_REQUEST", 2)
    full = query.load_experiment(url, EXPERIMENT)
    monkeypatch.undo()
    whole = query.load_experiment(url, EXPERIMENT)
    assert {r.run_id: r.history for r in full.runs} == {r.run_id: r.history for r in whole.runs}
    assert len(full.runs) == 8


def test_bulk_interval_endpoint_is_the_fallback(server, monkeypatch):
    url, _, _ = server
    bulk = query.load_experiment(url, EXPERIMENT)
    monkeypatch.setattr(histories, "BULK_HISTORY_ENDPOINT", "/ajax-api/2.0/mlflow/metrics/absent")
    with count_requests() as requests_by_path:
        interval = query.load_experiment(url, EXPERIMENT)
    assert interval.history_source == "tracking server bulk-interval endpoint"
    assert requests_by_path["ajax-api/2.0/mlflow/metrics/absent"] == 1
    logged = {k for r in bulk.runs for k in r.history}
    assert requests_by_path["api/2.0/mlflow/metrics/get-history-bulk-interval"] == len(logged)
    assert {r.run_id: r.history for r in interval.runs} == {r.run_id: r.history for r in bulk.runs}


@pytest.mark.parametrize("route", ["listing", "runs/search"])
def test_search_pages_over_http(server, monkeypatch, route):
    """Pages through the server's listing, or through runs/search on a server without it."""
    url, _, ids = server
    monkeypatch.setattr(query, "SEARCH_PAGE_SIZE", 3)
    monkeypatch.setattr(histories, "BULK_RUNS_PER_REQUEST", 2)
    if route == "runs/search":  # what a stock mlflow server answers: 404
        monkeypatch.setattr(listing, "LISTING_ENDPOINT", "/api/2.0/b2b-report/absent")
    with count_requests() as requests_by_path:
        data = query.load_experiment(url, EXPERIMENT)
    if route == "runs/search":
        assert requests_by_path["api/2.0/b2b-report/absent"] == 1
        assert requests_by_path[SEARCH] == 3 and requests_by_path[LISTING] == 0
    else:
        # Pages at 0, 3 and 6, the last two in flight together; at most one more past the end.
        assert requests_by_path[LISTING] in (3, 4) and requests_by_path[SEARCH] == 0
    # 6 runs log the contract metrics: 3 batches of 2 for each of them
    assert requests_by_path["ajax-api/2.0/mlflow/metrics/get-history-bulk"] >= 5 * 3
    assert sorted(r.run_id for r in data.runs) == sorted(ids.values())


def test_runs_read_as_json_match_the_database_records(server):
    url, sqlite_uri, _ = server
    # NaN travels as the JSON string "NaN"; log odd values over HTTP into their own experiment.
    client = MlflowClient(url)
    eid = client.create_experiment("json-values")
    rid = client.create_run(eid, run_name="odd values").info.run_id
    client.log_metric(rid, "nan_metric", float("nan"))
    client.log_metric(rid, "inf_metric", float("inf"), step=3)
    client.log_metric(rid, "neg_inf_metric", float("-inf"))
    for experiment in (EXPERIMENT, "json-values"):
        via_http = query.ExperimentReader(url).read(experiment)
        via_sql = query.ExperimentReader(sqlite_uri).read(experiment)
        assert [r.run_id for r in via_http.runs] == [r.run_id for r in via_sql.runs]
        assert via_http.history_keys == via_sql.history_keys
        for a, b in zip(via_http.runs, via_sql.runs, strict=True):
            a_fields, b_fields = dataclasses.asdict(a), dataclasses.asdict(b)
            a_metrics, b_metrics = a_fields.pop("metrics"), b_fields.pop("metrics")
            assert a_fields == b_fields
            assert a_metrics.keys() == b_metrics.keys()
            for key, value in a_metrics.items():
                assert value == b_metrics[key] or (math.isnan(value) and math.isnan(b_metrics[key]))
    odd = query.ExperimentReader(url).read("json-values").runs[0]
    assert math.isnan(odd.metrics["nan_metric"])
    # MLflow's SQL store keeps +-inf as +-max float; both paths read it back as the infinity.
    assert odd.metrics["inf_metric"] == math.inf and odd.metric_steps["inf_metric"] == 3
    assert odd.metrics["neg_inf_metric"] == -math.inf


def test_report_over_http_asks_for_full_histories_of_detail_runs_only(server, tmp_path):
    url, _, _ = server
    with count_requests() as requests_by_path:
        write_report(url, EXPERIMENT, str(tmp_path), top_n=1, detail_runs=1)
    # loss, val_loss, val_recall_at_100 for every run; then val_recall_at_10 and _50 for the
    # one run shown in detail (all 8 runs fit one batch of 100).
    assert requests_by_path["ajax-api/2.0/mlflow/metrics/get-history-bulk"] == 3 + 2
    # every run with the few metrics the views show of all runs, then the one in detail in full
    assert requests_by_path[LISTING] == 2 and requests_by_path[SEARCH] == 0
    assert sum(requests_by_path.values()) == 5 + 3


def test_retried_epochs_and_non_finite_points_over_http(server):
    """The bulk endpoint path keeps the latest point per step and reads NaN/inf back as such."""
    url, _, _ = server
    log_retried_run(url, "retried-http")
    data = query.load_experiment(url, "retried-http")
    assert data.history_source.startswith("tracking server")
    (run,) = data.runs
    assert run.history[contract.METRIC_LOSS] == [(0, 3.0), (1, 10.0), (2, 11.0)]
    values = [v for _, v in run.history[contract.METRIC_VAL_LOSS]]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]
