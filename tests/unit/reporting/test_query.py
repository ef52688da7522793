"""MLflow queries on a real SQLite store: pagination, bulk histories, no-history runs."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from reporting import histories, query
from tests.unit.reporting.mlflow_runs import EVIL
from trainer import contract

EXPERIMENT = "reporting-test"


def test_search_follows_page_tokens(sweep_store, monkeypatch):
    calls: list[str | None] = []
    original = MlflowClient.search_runs

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("page_token"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", spy)
    monkeypatch.setattr(query, "SEARCH_PAGE_SIZE", 3)
    data = query.load_experiment(sweep_store.tracking_uri, EXPERIMENT)
    assert len(calls) == 3  # 8 runs in pages of 3
    assert calls[0] is None and all(calls[1:])
    assert sorted(r.run_id for r in data.runs) == sorted(sweep_store.ids.values())


def test_histories_come_back_per_run_and_metric(sweep_store):
    data = query.load_experiment(sweep_store.tracking_uri, EXPERIMENT)
    assert data.history_source == "bulk SQL on the tracking database"
    runs = {r.name: r for r in data.runs}
    hist = runs["hist-small"].history
    assert hist[contract.METRIC_LOSS] == [(0, 3.0), (1, 2.84), (2, 2.68)]
    assert [s for s, _ in hist[contract.val_recall_key(100)]] == [0, 1, 2]
    assert hist[contract.val_recall_key(100)][-1][1] == 0.256
    assert not runs["failed"].has_history and runs["failed"].history == {}
    assert runs["running"].status == "RUNNING" and runs["running"].end_time is None
    # A history metric outside the contract is found from its step > 0.
    assert data.history_keys[:5] == contract.history_metrics()
    assert any(k.endswith("h") and "<script>" in k for k in data.history_keys[5:])
    # Tags and params arrive with the run, system tags do not.
    assert runs["ids-large"].model_config == "mc_large"
    assert not any(k.startswith("mlflow.") for k in runs["ids-large"].tags)


def test_sql_batches_and_per_run_fallback_agree(sweep_store, monkeypatch):
    bulk = query.load_experiment(sweep_store.tracking_uri, EXPERIMENT)
    monkeypatch.setattr(histories, "SQL_RUNS_PER_QUERY", 2)
    batched = query.load_experiment(sweep_store.tracking_uri, EXPERIMENT)

    def per_run(client, uri, runs, keys):
        return histories.fetch_histories_per_run(client, runs, keys), "per run"

    slow = query.load_experiment(sweep_store.tracking_uri, EXPERIMENT, history_fetcher=per_run)
    as_map = lambda d: {r.run_id: r.history for r in d.runs}
    assert as_map(bulk) == as_map(batched) == as_map(slow)
    assert sum(r.has_history for r in bulk.runs) == 6


def test_last_value_wins_when_a_step_is_logged_twice(tracking_uri):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment(EXPERIMENT)
    rid = client.create_run(eid).info.run_id
    client.log_metric(rid, contract.METRIC_LOSS, 2.0, step=0, timestamp=1)
    client.log_metric(rid, contract.METRIC_LOSS, 1.5, step=0, timestamp=2)
    client.log_metric(rid, contract.METRIC_LOSS, 1.0, step=1, timestamp=3)
    data = query.load_experiment(tracking_uri, EXPERIMENT)
    assert data.runs[0].history[contract.METRIC_LOSS] == [(0, 1.5), (1, 1.0)]
    assert data.runs[0].name  # falls back to a generated name


def test_missing_experiment_is_not_an_outage(tracking_uri):
    data = query.load_experiment(tracking_uri, "absent")
    assert data.runs == [] and "does not exist" in data.notes[0]


def _recording(calls: list):
    """A history fetcher that records each call's runs and keys, then does the real fetch."""

    def fetch(client, uri, runs, keys):
        calls.append(({r.name for r in runs}, list(keys)))
        return histories.fetch_histories(client, uri, runs, keys)

    return fetch


def test_reader_knows_who_logged_history_before_fetching_and_fetches_once(tracking_uri):
    client = MlflowClient(tracking_uri)
    eid = client.create_experiment(EXPERIMENT)
    only_lr = client.create_run(eid, run_name="only-lr").info.run_id
    for step, value in enumerate([0.1, 0.05, 0.02]):
        client.log_metric(only_lr, "lr", value, step=step)
    summary_only = client.create_run(eid, run_name="summary-only").info.run_id
    client.log_metric(summary_only, contract.test_recall_key(100), 0.3)
    calls: list = []
    reader = query.ExperimentReader(tracking_uri, _recording(calls))
    data = reader.read(EXPERIMENT)
    runs = {r.name: r for r in data.runs}
    # Known from the latest metrics alone: no history request yet.
    assert calls == []
    assert runs["only-lr"].has_history and runs["only-lr"].history == {}
    assert runs["only-lr"].logged_history == ("lr",)
    assert not runs["summary-only"].has_history
    reader.fill_histories(data, data.runs, [contract.METRIC_LOSS])
    assert calls == []  # nobody logged loss: nothing to ask for
    reader.fill_histories(data, data.runs, data.history_keys)
    assert calls == [({"only-lr"}, ["lr"])]
    assert runs["only-lr"].history == {"lr": [(0, 0.1), (1, 0.05), (2, 0.02)]}
    reader.fill_histories(data, data.runs, data.history_keys)
    assert len(calls) == 1  # already fetched: no second request


def test_report_fetches_every_history_only_for_runs_shown_in_detail(sweep_store, tmp_path):
    from reporting.build import write_report

    calls: list = []
    result = write_report(
        sweep_store.tracking_uri,
        EXPERIMENT,
        str(tmp_path),
        top_n=1,
        detail_runs=2,
        _history_fetcher=_recording(calls),
    )
    overview = [contract.METRIC_LOSS, contract.METRIC_VAL_LOSS, contract.val_recall_key(100)]
    with_history = {"ids-small-s1", "ids-small-s2", "ids-small-s3", "ids-large", "hist-small"}
    # 1: the overview's three curves for every run that logged them.
    assert calls[0] == (with_history | {EVIL}, overview)
    # 2: the rest of the history metrics for the two best runs (the one compared is among them).
    assert calls[1] == ({"hist-small", "ids-large"}, [contract.val_recall_key(k) for k in (10, 50)])
    assert len(calls) == 2
    page = Path(result.pages["training_curves"]).read_text(encoding="utf-8")
    assert "6 of 8 runs logged a history" in page
    # The epoch tables of the two runs shown in detail carry every metric they logged.
    assert page.count('<th class="num mono"><bdi>val_recall_at_10</bdi></th>') == 2
    # The other runs' final values come from their latest metrics, fetched history or not:
    # ids-small-s1 logged val_recall_at_10 = 0.02, 0.03, 0.04 at epochs 0, 1, 2.
    table = page[page.index('id="more-history"') :]
    row = next(r for r in table.split("<tr>") if ">ids-small-s1<" in r)
    assert 'data-v="0.04"' in row and '<td class="num">3</td>' in row  # 3 epochs
