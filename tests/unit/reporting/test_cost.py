"""The report's cost: shares of shared steps, the Pareto front, the views, on a real store."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from reporting import cost
from reporting.aggregate import LeaderRow
from reporting.build import write_report
from reporting.records import RunRecord
from tests.unit.reporting.mlflow_runs import EVIL, log_run, standard_history
from trainer import contract

RANK = contract.DEFAULT_RANK_METRIC


def _run(run_id, own=None, ingest=None, transform=None, executions=("i1", "t1"), steps=True):
    metrics, tags = {}, {}
    if own is not None:
        metrics[contract.COST_USD] = own
        if steps:
            metrics[contract.cost_usd_key("train")] = own
            metrics[contract.cost_usd_key("evaluate")] = 0.0
    for step, usd, execution in zip(contract.SHARED_STEPS, (ingest, transform), executions):
        if usd is not None:
            metrics[contract.cost_usd_key(step)] = usd
            tags[contract.cost_execution_tag(step)] = execution
    return RunRecord(run_id, run_id, "FINISHED", 1, 2, {}, tags, metrics, {})


def _cost_metrics(own: float, ingest: float, transform: float, transform_id: str) -> tuple:
    metrics = {
        contract.COST_USD: own,
        contract.cost_usd_key("ingest"): ingest,
        contract.cost_usd_key("transform"): transform,
        contract.cost_seconds_key("train"): 100.0,
        contract.cost_usd_key("train"): own * 0.9,
        contract.cost_usd_key("evaluate"): own * 0.1,
    }
    tags = {
        contract.cost_execution_tag("ingest"): "ingest-1",
        contract.cost_execution_tag("transform"): transform_id,
        contract.TAG_COST_PRICES: "USD list prices as of 2026-12-03",
    }
    return metrics, tags


def test_a_shared_step_is_divided_among_the_runs_that_logged_its_execution():
    runs = [
        _run("a", own=1.0, ingest=0.6, transform=0.4, executions=("i1", "t1")),
        _run("b", own=2.0, ingest=0.6, transform=0.4, executions=("i1", "t1")),
        _run("c", own=3.0, ingest=0.6, transform=0.9, executions=("i1", "t2")),
        _run("old"),  # trained before costs were logged
        _run("partial", own=0.5, steps=False),  # its steps logged no cost
    ]
    costs = cost.run_costs(runs)
    assert set(costs) == {"a", "b", "c", "partial"}
    assert costs["a"].usd == pytest.approx(1.0 + 0.6 / 3 + 0.4 / 2)
    assert costs["c"].usd == pytest.approx(3.0 + 0.6 / 3 + 0.9)
    assert costs["c"].sharing == {"ingest": 3, "transform": 1}
    # Nor did its own steps: cost.usd alone, without cost.train.usd / cost.evaluate.usd.
    assert costs["partial"].usd == 0.5
    assert costs["partial"].unknown == ("train", "evaluate", "ingest", "transform")
    # Every shared step is counted once in total.
    assert sum(c.shared for c in costs.values()) == pytest.approx(0.6 + 0.4 + 0.9)


def test_the_pareto_front_keeps_what_nothing_cheaper_beats():
    points = [
        ("a", 1.0, 0.20),
        ("b", 2.0, 0.30),
        ("c", 2.5, 0.25),
        ("d", 3.0, 0.35),
        ("e", 1.0, 0.10),
    ]
    assert cost.pareto_front(points) == ["a", "b", "d"]
    assert cost.pareto_front(points, lower_better=True) == ["e"]
    # Equal cost: the better one only; equal both: the first.
    assert cost.pareto_front([("x", 1.0, 0.3), ("y", 1.0, 0.3), ("z", 1.0, 0.2)]) == ["x"]
    assert cost.pareto_front([]) == []


def _row(run, rank, value, tied=None):
    return LeaderRow(rank, run, value, value, None, None, None, {}, {}, tied=tied)


def test_the_dashboard_names_the_cheapest_run_tied_with_the_best():
    runs = [_run("best", own=2.0), _run("tied", own=0.5), _run("cheap", own=0.1), _run("old")]
    rows = [
        _row(runs[0], 1, 0.30, tied=True),
        _row(runs[1], 2, 0.29, tied=True),
        _row(runs[2], 3, 0.20, tied=False),  # cheaper, but worse
        _row(runs[3], 4, 0.295, tied=True),  # tied, but no cost
    ]
    costs = cost.run_costs(runs)
    sentence = cost.cost_sentence(rows, costs, "val R@100")
    assert sentence.startswith("Cheapest run tied with the best on val R@100: tied")
    assert "$0.5000" in sentence and "the best, best, cost $2.00, 75% less" in sentence
    rows[1].tied = False
    assert cost.cost_sentence(rows, costs, "val R@100") == (
        "The best run, best, cost $2.00; no other run with a cost is tied with it on val R@100."
    )
    assert cost.cost_sentence(rows, {}, "val R@100") is None
    assert cost.usd(None) == "\u2014" and cost.usd(1234.5) == "$1,234.50"


@pytest.fixture
def costed_report(tracking_uri, tmp_path):
    """Three runs with costs (one named EVIL), tied by the best-model step, and an old one."""
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("costed")
    ids = {}
    ids["best"] = log_run(client, exp, "best", history=standard_history(1.0))
    for name, scale, extra in (("cheap-tied", 0.99, {}), (EVIL, 0.98, {}), ("old", 0.5, {})):
        tags = {contract.TAG_BEST_RUN_ID: ids["best"], contract.TAG_TIED_WITH_BEST: "true"}
        ids[name] = log_run(client, exp, name, history=standard_history(scale), tags=tags)
    spend = {"best": 2.0, "cheap-tied": 0.25, EVIL: 0.05}
    for name, own in spend.items():
        metrics, tags = _cost_metrics(own, 0.3, 0.3, "t-1")
        for key, value in metrics.items():
            client.log_metric(ids[name], key, value)
        for key, value in tags.items():
            client.set_tag(ids[name], key, value)
    write_report(tracking_uri, "costed", str(tmp_path / "out"))
    pages = {v: (tmp_path / "out" / f"{v}.html").read_text() for v in contract.VIEWS}
    return ids, pages


def test_the_leaderboard_shows_each_runs_cost_and_marks_the_runs_without(costed_report):
    ids, pages = costed_report
    board = pages[contract.VIEW_LEADERBOARD]
    assert '<th class="num" data-sort="num">Cost</th>' in board
    row = re.search(rf'data-run-id="{ids["cheap-tied"]}".*?</tr>', board, re.S).group(0)
    # 0.25 own + 0.3 / 3 ingest + 0.3 / 3 transform
    value = re.search(r'<td class="num cost" data-v="([^"]+)"', row).group(1)
    assert float(value) == pytest.approx(0.45) and "$0.4500" in row
    assert "ingest shared by 3" in row and "without" not in row
    old = re.search(rf'data-run-id="{ids["old"]}".*?</tr>', board, re.S).group(0)
    assert '<span class="muted">no cost</span>' in old
    assert "1 runs trained before costs were logged" in board


def test_the_cost_chart_is_a_static_svg_with_the_front_and_escaped_names(costed_report):
    _, pages = costed_report
    board = pages[contract.VIEW_LEADERBOARD]
    chart = re.search(r'<div class="chart-card" id="cost-chart">(.*?)</div>', board, re.S).group(1)
    assert chart.lstrip().startswith("<svg") and "Pareto front" in chart
    assert "<script" not in chart and "&lt;script&gt;" in chart
    # Every run with a cost is on the front here: each cheaper one is worse.
    assert chart.count("cheap-tied") == 1


def test_the_dashboard_names_the_cheapest_tied_run_escaped(costed_report):
    _, pages = costed_report
    banner = re.search(
        r'<div class="banner decision" id="cost">(.*?)</div>', pages["dashboard"], re.S
    )
    text = banner.group(1)
    assert "Cheapest run tied with the best" in text and "$0.2500" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "the best, best, cost $2.20" in text
