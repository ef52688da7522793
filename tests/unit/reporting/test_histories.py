"""Histories read back from a real SQLite store: one point per step, the latest logged."""

from __future__ import annotations

import math

from reporting import histories, query
from tests.unit.reporting.mlflow_runs import log_retried_run
from trainer import contract


def test_retried_epochs_keep_the_latest_point_per_step(tracking_uri):
    rid = log_retried_run(tracking_uri)
    data = query.load_experiment(tracking_uri, "retried")
    (run,) = data.runs
    assert run.run_id == rid
    assert run.history[contract.METRIC_LOSS] == [(0, 3.0), (1, 10.0), (2, 11.0)]
    assert run.epochs == 3


def test_every_history_path_agrees_on_retried_and_non_finite_points(tracking_uri):
    log_retried_run(tracking_uri)
    bulk = query.load_experiment(tracking_uri, "retried")

    def per_run(client, uri, runs, keys):
        return histories.fetch_histories_per_run(client, runs, keys), "per run"

    slow = query.load_experiment(tracking_uri, "retried", history_fetcher=per_run)
    for data in (bulk, slow):
        (run,) = data.runs
        assert run.history[contract.METRIC_LOSS] == [(0, 3.0), (1, 10.0), (2, 11.0)]
        steps, values = zip(*run.history[contract.METRIC_VAL_LOSS], strict=True)
        assert steps == (0, 1, 2)
        # NaN comes back as NaN (not the store's 0), infinities as infinities (not 1.8e308).
        assert math.isnan(values[0]) and values[1:] == (math.inf, -math.inf)


def test_same_step_same_time_keeps_one_point():
    raw: dict = {}
    for value in (2.0, 1.0):
        histories._store_points(raw, "r", "loss", 1, 7, value)
    histories._store_points(raw, "r", "loss", 0, 9, 5.0)
    assert histories._finish(raw) == {"r": {"loss": [(0, 5.0), (1, 2.0)]}}
