"""A report over more runs than it lists: the best listed, the rest aggregated, few metrics read.

``contract.REPORT_LISTED_RUNS`` is lowered to 3 so the standard sweep (6 ranked runs, a failed
and a running one, all in a real SQLite store) is "many runs".
"""

from __future__ import annotations

import re

import pytest

from reporting import query
from reporting.build import write_report
from reporting.report_model import read_model, summary_metric_keys
from tests.unit.reporting.mlflow_runs import EXPERIMENT
from tests.unit.reporting.test_report import _page, _rows, _text
from trainer import contract


@pytest.fixture
def few_listed(monkeypatch):
    monkeypatch.setattr(contract, "REPORT_LISTED_RUNS", 3)


def _model(sweep_store, **kwargs):
    model, _ = read_model(
        sweep_store.tracking_uri,
        EXPERIMENT,
        contract.DEFAULT_RANK_METRIC,
        compare_run_ids=None,
        top_n=1,
        detail_runs=1,
        **kwargs,
    )
    return model


def test_only_the_runs_in_detail_are_read_in_full(sweep_store, few_listed):
    model = _model(sweep_store, highlight_run_id=sweep_store.ids["evil"])
    by_name = {r.name: r for r in model.data.runs}
    assert model.data.partial
    few = set(summary_metric_keys(model.rank))
    # the leader (in detail, compared) and this run are read in full; the others not
    full = {n for n, r in by_name.items() if r.complete}
    assert full == {"hist-small", by_name_of(sweep_store, "evil")}
    for name, run in by_name.items():
        if not run.complete:
            assert set(run.metrics) <= few, name
    assert set(by_name["hist-small"].metrics) - few  # read in full: more than the few
    # histories: the overview's for the listed runs only; the unlisted ones none
    assert not by_name["ids-small-s1"].history and not by_name["ids-small-s2"].history
    assert by_name["ids-large"].history.get(contract.METRIC_LOSS)


def by_name_of(sweep_store, key: str) -> str:
    """The run name of the sweep's run ``key`` (the hostile run's name is not its key)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(sweep_store.tracking_uri).get_run(sweep_store.ids[key]).info.run_name


def test_leaderboard_lists_the_best_and_this_run_and_aggregates_the_rest(
    sweep_store, few_listed, tmp_path
):
    result = write_report(
        sweep_store.tracking_uri,
        EXPERIMENT,
        str(tmp_path),
        highlight_run_id=sweep_store.ids["evil"],
    )
    page = _page(result, "leaderboard")
    rows = _rows(page, "leaderboard-table")[1:]
    ids = [re.search(r'data-run-id="([0-9a-f]+)"', r).group(1) for r in rows]
    by_id = {v: k for k, v in sweep_store.ids.items()}
    # the best 3, this run (6th), then the unranked ones
    assert [by_id[i] for i in ids] == [
        "hist-small", "ids-large", "ids-small-s3", "evil", "running", "failed",
    ]  # fmt: skip
    assert "The best 6 of 8 runs" in _text(page)
    (unlisted,) = _rows(page, "unlisted-table")[1:]
    # ids-small-s1 and -s2: best val recall@100 0.16 and 0.176 (see mlflow_runs.sweep)
    cells = _text(unlisted).split()
    assert cells[:5] == ["fc_ids", "mc_small", "2", "2", "0"]
    assert [float(c) for c in cells[5:]] == pytest.approx([0.176, 0.168])
    curves = _text(_page(result, "training_curves"))
    assert "2 more are aggregated there per config pair" in curves
    # the heatmap still counts every run: fc_ids x mc_small holds the three seeds
    heat = _text(_page(result, "heatmap"))
    assert "n=3" in heat or "n = 3" in heat


def test_a_few_hundred_runs_are_read_in_full(sweep_store):
    model = _model(sweep_store)
    assert all(r.complete for r in model.data.runs)
    assert model.unlisted == [] and len(model.listed) == len(model.rows)


def test_a_store_that_cannot_filter_gives_every_metric(sweep_store, few_listed, monkeypatch):
    """A server without the listing route answers runs/search: every run complete at once."""
    real = query.search_all_runs

    def unfiltered(client, uri, eid, skipped=None, *, metric_keys=None, run_ids=None):
        runs, _ = real(client, uri, eid, skipped)
        return runs, False

    monkeypatch.setattr(query, "search_all_runs", unfiltered)
    model = _model(sweep_store)
    assert not model.data.partial and all(r.complete for r in model.data.runs)
    assert model.unlisted_runs == 3  # ids-small-s1, -s2 and the hostile run: none marked
