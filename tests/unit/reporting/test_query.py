"""MLflow queries on a real SQLite store: pagination, bulk histories, no-history runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mlflow.tracking import MlflowClient

from reporting import histories, query
from tests.unit.reporting.mlflow_runs import EVIL, LOST_HEARTBEAT, log_lost_runs
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
    client = MlflowClient(sweep_store.tracking_uri)
    runs = query.search_runs_paged(client, sweep_store.experiment_id, [])
    assert len(calls) == 3  # 8 runs in pages of 3
    assert calls[0] is None and all(calls[1:])
    assert sorted(r.run_id for r in runs) == sorted(sweep_store.ids.values())


def test_a_database_store_is_read_in_column_queries_exactly_as_search_runs_reads_it(
    sweep_store, monkeypatch
):
    calls = []
    monkeypatch.setattr(MlflowClient, "search_runs", lambda *a, **k: calls.append(1))
    client = MlflowClient(sweep_store.tracking_uri)
    fast, _ = query.search_all_runs(client, sweep_store.tracking_uri, sweep_store.experiment_id)
    assert calls == []  # MLflow's search_runs was not asked
    monkeypatch.undo()
    paged = query.search_runs_paged(client, sweep_store.experiment_id, [])
    # Every field of every run (the hostile keys and values, NaN and infinities too), in order.
    assert [r.run_id for r in fast] == [r.run_id for r in paged]
    for a, b in zip(fast, paged, strict=True):
        assert repr(dataclasses.asdict(a)) == repr(dataclasses.asdict(b))  # NaN != NaN


def test_column_queries_read_nan_and_infinities_as_logged(tracking_uri):
    import math

    from tests.unit.reporting.mlflow_runs import log_retried_run

    log_retried_run(tracking_uri)
    client = MlflowClient(tracking_uri)
    eid = client.get_experiment_by_name("retried").experiment_id
    client.log_metric(client.search_runs([eid])[0].info.run_id, "nan_metric", math.nan)
    (fast,), _ = query.search_all_runs(client, tracking_uri, eid)
    (paged,) = query.search_runs_paged(client, eid, [])
    assert fast.metrics[contract.METRIC_VAL_LOSS] == -math.inf  # the last step's
    assert math.isnan(fast.metrics["nan_metric"])
    assert repr(dataclasses.asdict(fast)) == repr(dataclasses.asdict(paged))


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


def test_reader_shows_silent_running_runs_as_lost_and_ends_them_only_when_asked(tracking_uri):
    client = MlflowClient(tracking_uri)
    ids = log_lost_runs(client, client.create_experiment("lost"))
    read_only = query.ExperimentReader(tracking_uri).read("lost")
    runs = {r.name: r for r in read_only.runs}
    assert runs["oom-killed"].lost == LOST_HEARTBEAT
    assert runs["never-beat"].lost == "2023-11-14T22:13:20Z"  # its start time
    assert runs["alive"].lost == runs["done"].lost == ""
    assert runs["oom-killed"].status == contract.STATUS_RUNNING and runs["oom-killed"].failed
    assert runs["oom-killed"].failure_reason.startswith(
        f"lost: no heartbeat since {LOST_HEARTBEAT};"
    )
    assert [n for n in read_only.notes if "shown as lost; this report only reads" in n]
    assert client.get_run(ids["oom-killed"]).info.status == contract.STATUS_RUNNING
    # A longer limit: nobody is lost.
    patient = query.ExperimentReader(tracking_uri).read("lost", lost_after_s=1e12)
    assert not any(r.lost for r in patient.runs) and patient.notes == []

    ended = query.ExperimentReader(tracking_uri).read("lost", end_lost=True)
    assert [n for n in ended.notes if n.startswith("2 runs had sent no sign of life for over 15")]
    for name in ("oom-killed", "never-beat"):
        mlflow_run = client.get_run(ids[name])
        assert mlflow_run.info.status == contract.STATUS_FAILED
        assert mlflow_run.data.tags[contract.TAG_LOST] == runs[name].lost
    assert client.get_run(ids["alive"]).info.status == contract.STATUS_RUNNING
    # The records say what MLflow now holds: read again, the same runs, nothing more to end.
    again = query.ExperimentReader(tracking_uri).read("lost", end_lost=True)
    assert again.notes == []
    assert [dataclasses.asdict(r) for r in again.runs] == [
        dataclasses.asdict(r) for r in ended.runs
    ]
    reason = {r.name: r.failure_reason for r in again.runs}["oom-killed"]
    assert reason.startswith(f"lost: no heartbeat since {LOST_HEARTBEAT} (") and "min); " in reason


def test_a_run_taken_over_after_it_was_ended_is_not_lost(tracking_uri):
    client = MlflowClient(tracking_uri)
    ids = log_lost_runs(client, client.create_experiment("lost"))
    query.ExperimentReader(tracking_uri).read("lost", end_lost=True)
    # The retried step sets it RUNNING and beats before it clears the tag: not lost meanwhile.
    client.set_tag(ids["oom-killed"], contract.TAG_HEARTBEAT, "2999-01-01T00:00:00Z")
    client.update_run(ids["oom-killed"], status=contract.STATUS_RUNNING)
    runs = {r.name: r for r in query.ExperimentReader(tracking_uri).read("lost").runs}
    assert runs["oom-killed"].lost == "" and runs["oom-killed"].shown_status == "running"
    assert runs["never-beat"].lost and runs["never-beat"].shown_status == "lost"


def _fake_listing(monkeypatch, total: int, *, bad_token_at: int | None = None) -> list[int]:
    """The listing route's paging, answered by a stand-in (later pages answer sooner)."""
    import threading
    import time

    from reporting import listing

    asked: list[int] = []
    lock = threading.Lock()

    def page(creds, body, token):
        offset = int(token or 0)
        with lock:
            asked.append(offset)
        time.sleep(0.05 if offset % 2 == 0 else 0.0)  # answers out of order
        size = query.SEARCH_PAGE_SIZE
        ids = list(range(offset, min(offset + size, total)))
        more = offset + size < total
        token = str(offset + size) if more else None
        if bad_token_at is not None and offset == bad_token_at:
            token = "later"
        runs = [{"info": {"run_id": f"r{i:03d}", "start_time": 1}, "params": {}, "tags": {},
                 "metrics": [[0, i, 0]]} for i in ids]  # fmt: skip
        fmt = listing.LISTING_FORMAT
        return {"format": fmt, "metric_keys": ["m"], "runs": runs, "next_page_token": token}

    monkeypatch.setattr(query, "_listing_page", page)
    monkeypatch.setattr(query, "host_creds", lambda client: None)
    monkeypatch.setattr(query, "SEARCH_PAGE_SIZE", 2)
    return asked


def test_listing_pages_after_the_first_are_asked_two_at_a_time_and_kept_in_order(monkeypatch):
    asked = _fake_listing(monkeypatch, total=9)  # pages at 0, 2, 4, 6, 8
    pages = query.listing_pages(None, "1")
    assert [r["info"]["run_id"] for p in pages for r in p["runs"]] == [
        f"r{i:03d}" for i in range(9)
    ]
    assert asked[0] == 0 and sorted(asked)[:5] == [0, 2, 4, 6, 8]
    assert sorted(asked)[5:] in ([], [10])  # at most one asked past the end (answered empty)
    one = _fake_listing(monkeypatch, total=2)
    assert len(query.listing_pages(None, "1")) == 1 and one == [0]  # one page: one request


def test_a_listing_page_token_that_is_no_offset_is_refused(monkeypatch):
    import pytest
    from mlflow.exceptions import MlflowException

    _fake_listing(monkeypatch, total=9, bad_token_at=2)
    with pytest.raises(MlflowException, match="page token 'later', expected the offset 4"):
        query.listing_pages(None, "1")
